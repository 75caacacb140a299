"""Boxes-per-image summary: the histogram of the paper's Table 6, as JSON and as a PNG bar chart."""
import json
import os.path as osp
from typing import Dict, Iterable

# (label, lowest, highest) boxes per image. The paper's Table 6 prints "12-20" and "30-50"; read as 11-20 and 31-50
# so that every count falls in exactly one bucket.
BOX_COUNT_BUCKETS = (("0", 0, 0), ("1-10", 1, 10), ("11-20", 11, 20), ("21-30", 21, 30), ("31-50", 31, 50),
                     (">50", 51, None))


def bucket_of(num_boxes: int) -> str:
    for label, low, high in BOX_COUNT_BUCKETS:
        if num_boxes >= low and (high is None or num_boxes <= high):
            return label
    raise ValueError(f"negative box count {num_boxes}")


def box_count_histogram(counts: Iterable[int]) -> Dict[str, int]:
    """Number of images per bucket of :data:`BOX_COUNT_BUCKETS`, in bucket order."""
    hist = {label: 0 for label, _, _ in BOX_COUNT_BUCKETS}
    for n in counts:
        hist[bucket_of(n)] += 1
    return hist


def plot_histogram(hist: Dict[str, int], path: str, title: str = "Boxes per image") -> str:
    """Bar chart of ``hist`` (bucket -> images) saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    labels, values = list(hist), list(hist.values())
    bars = ax.bar(labels, values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=8)
    ax.set_xlabel("boxes per image")
    ax.set_ylabel("images")
    ax.set_title(f"{title} ({sum(values):,} images)")
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_summary(summary: dict, out_dir: str, stem: str = "summary") -> tuple:
    """Write ``summary`` to ``<stem>.json`` and its histogram to ``<stem>_boxes_per_image.png``; return both paths."""
    json_path = osp.join(out_dir, f"{stem}.json")
    png_path = osp.join(out_dir, f"{stem}_boxes_per_image.png")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    plot_histogram(summary["boxes_per_image_histogram"], png_path)
    return json_path, png_path
