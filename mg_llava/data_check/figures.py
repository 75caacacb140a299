"""The check's histograms (PNG) and the summary statistics it reports with them."""
import os.path as osp
from typing import Dict, Sequence

import numpy as np


def summary(values: Sequence[float]) -> dict:
    """count, total, mean and the usual percentiles of ``values`` (empty: count 0 only)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return dict(count=0)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return dict(count=int(values.size), total=float(values.sum()), mean=float(values.mean()), min=float(values.min()),
                p50=float(p50), p90=float(p90), p99=float(p99), max=float(values.max()))


def save_histograms(out_dir: str, sizes: np.ndarray, tokens: np.ndarray, boxes: np.ndarray, raw_boxes: np.ndarray,
                    max_length: int) -> Dict[str, str]:
    """Write image_sizes.png, tokens_per_sample.png and boxes_per_image.png under ``out_dir``; returns their paths.

    Args:
        sizes: (M, 2) (W, H) of every decoded image and sampled frame.
        tokens: (S,) LLM tokens of every sample training keeps (text + visual + box tokens).
        boxes, raw_boxes: (M,) boxes per image/frame after the box rules, and box-file entries per image/frame.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if len(sizes):
        axes[0].hist2d(sizes[:, 0], sizes[:, 1], bins=40, cmin=1)
        axes[1].hist(sizes.max(axis=1), bins=50)
    axes[0].set(title=f"image sizes ({len(sizes)} images/frames)", xlabel="width (px)", ylabel="height (px)")
    axes[1].set(title="long side", xlabel="pixels", ylabel="images/frames")
    paths["image_sizes"] = _save(fig, out_dir, "image_sizes.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(tokens):
        ax.hist(tokens, bins=60)
    ax.set(title=f"LLM tokens per sample ({len(tokens)} samples; text cut at max_length={max_length})",
           xlabel="tokens (text + image + box)", ylabel="samples")
    paths["tokens_per_sample"] = _save(fig, out_dir, "tokens_per_sample.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(boxes):
        top = int(max(boxes.max(), raw_boxes.max())) + 1
        bins = np.arange(0, top + 1) - 0.5 if top <= 120 else 60
        ax.hist([raw_boxes, boxes], bins=bins, label=["in the box file", "after the box rules"])
        ax.legend()
    ax.set(title=f"boxes per image/frame ({len(boxes)})", xlabel="boxes", ylabel="images/frames")
    paths["boxes_per_image"] = _save(fig, out_dir, "boxes_per_image.png")
    return paths


def _save(fig, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt

    path = osp.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
