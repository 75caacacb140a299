"""How far OWLv2's boxes move when its input is made by the fast torch resize instead of the official processor.

    # a tiny OWLv2 with random weights, built here offline, at OWLv2-L's input size (1008 px)
    python tools/compare_owlv2_preprocess.py --out work_dirs/owlv2_preprocess.json
    # a real checkpoint
    python tools/compare_owlv2_preprocess.py --detector google/owlv2-large-patch14-ensemble --device cuda

For each scikit-image photograph the detector runs twice on the same tags: ``preprocess='transformers'`` (the
official ``Owlv2ImageProcessor``, the default) and ``preprocess='torch'``. Printed per image: the boxes each keeps
(score > threshold), how many of them are identical (the same int box with the same label), and over every patch's
predicted box (all P of them, kept or not) the mean and largest coordinate difference in original-image pixels.
Random weights say how much the resize alone moves a box, not how a trained detector's picks change.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
from collections import Counter

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mg_llava.boxgen.geometry import owlv2_boxes_to_original  # noqa: E402
from mg_llava.boxgen.images import to_uint8_tensor  # noqa: E402
from mg_llava.boxgen.owlv2 import OWLv2Detector  # noqa: E402
from mg_llava.testing.images import SKIMAGE_IMAGES, load_skimage  # noqa: E402

TAGS = ["person", "cat", "cup", "rocket", "camera", "coin", "flag", "table"]


def box_keys(result: dict) -> list:
    return [(tuple(box), label) for box, label in zip(result["boxes"], result["labels"])]


@torch.no_grad()
def patch_boxes(detector: OWLv2Detector, image: torch.Tensor) -> torch.Tensor:
    """(P, 4) every patch's predicted box, x1 y1 x2 y2 in original pixels, unclipped."""
    pixels = detector.pixel_values(image)[None].to(detector.dtype)
    feature_map, _ = detector.model.image_embedder(pixel_values=pixels)
    feats = feature_map.flatten(1, 2).float()
    pred = detector.model.box_predictor(feats, feature_map.float())[0]
    _, height, width = image.shape
    return owlv2_boxes_to_original(pred, height, width, clip=False).cpu()


def compare(detector_path: str, images, device: str = "cpu", score_threshold: float = 0.2) -> list:
    exact = OWLv2Detector(detector_path, preprocess="transformers", score_threshold=score_threshold, device=device)
    fast = OWLv2Detector(detector_path, preprocess="torch", score_threshold=score_threshold, device=device)
    rows = []
    for name, image in images:
        tensor = to_uint8_tensor(image)
        a, b = exact.detect([tensor], [TAGS])[0], fast.detect([tensor], [TAGS])[0]
        same = sum((Counter(box_keys(a)) & Counter(box_keys(b))).values())
        diff = (patch_boxes(exact, tensor) - patch_boxes(fast, tensor)).abs()
        rows.append(dict(image=name, size=list(image.size), boxes_transformers=len(a["boxes"]),
                         boxes_torch=len(b["boxes"]), identical=same, patch_box_mean_abs_px=diff.mean().item(),
                         patch_box_max_abs_px=diff.max().item()))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", help="OWLv2 folder or hub id (default: a tiny random OWLv2 built here)")
    parser.add_argument("--image-size", type=int, default=1008, help="input size of the tiny OWLv2")
    parser.add_argument("--images", nargs="+", default=list(SKIMAGE_IMAGES), choices=list(SKIMAGE_IMAGES))
    parser.add_argument("--score-threshold", type=float, default=0.2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the rows and their summary as JSON here")
    args = parser.parse_args(argv)

    images = [(name, load_skimage(name)) for name in args.images]
    with tempfile.TemporaryDirectory() as tmp:
        detector = args.detector
        if detector is None:
            from mg_llava.testing.tiny_models import build_owlv2

            detector = build_owlv2(osp.join(tmp, "owlv2"), image_size=args.image_size)
        rows = compare(detector, images, args.device, args.score_threshold)
    summary = dict(
        detector=args.detector or f"tiny random OWLv2, {args.image_size} px",
        boxes_transformers=sum(r["boxes_transformers"] for r in rows),
        boxes_torch=sum(r["boxes_torch"] for r in rows),
        identical=sum(r["identical"] for r in rows),
        patch_box_mean_abs_px=sum(r["patch_box_mean_abs_px"] for r in rows) / len(rows),
        patch_box_max_abs_px=max(r["patch_box_max_abs_px"] for r in rows),
    )
    print(f"{'image':<10} {'size':>9} {'boxes tf':>8} {'boxes torch':>11} {'identical':>9} {'mean |d| px':>11} "
          f"{'max |d| px':>10}")
    for r in rows + [dict(summary, image="all", size=["", ""])]:
        size = "x".join(map(str, r["size"])) if r["size"][0] != "" else ""
        print(f"{r['image']:<10} {size:>9} {r['boxes_transformers']:>8} {r['boxes_torch']:>11} "
              f"{r['identical']:>9} {r['patch_box_mean_abs_px']:>11.3f} {r['patch_box_max_abs_px']:>10.3f}")
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(dict(summary=summary, images=rows), f, indent=2)
    return summary


if __name__ == "__main__":
    main()
