"""The clean load-time box rules of SPEC 2: pad shift, class-aware NMS, the limit, rescale, clip.

Shape shorthand: N = boxes of one image. Coordinate spaces (docs/interfaces.md):
original image pixels -> (+ pad offset) padded-square pixels -> (x scale = S_high / side) high-res input pixels.
The released checkpoints' rules are in :mod:`.released_boxes`, with the released code's own NMS (torchvision's, with
its tie and threshold semantics); this rule and the box generator (:mod:`mg_llava.boxgen.owlv2`) use
:func:`class_aware_nms` (mmcv's).
"""
from dataclasses import dataclass

import numpy as np
import torch

from ..registry import MODELS
from .image_views import ViewGeometry

NMS_IOU_THRESHOLD = 0.2  # SPEC 2: class-aware NMS by label
MAX_BOXES = 100  # SPEC 3: at most 100 boxes per image


@dataclass(frozen=True)
class PreparedBoxes:
    """The boxes of one image after the load-time rules."""

    boxes: torch.Tensor  # (N, 4) float32, xyxy in high-res input pixels, by descending score
    index: torch.Tensor  # (N,) int64: row of each kept box in the input arrays (for its score and label)
    num_degenerate: int  # boxes kept by NMS/limit but dropped because nothing was left after clipping


def padded_square_boxes(boxes: np.ndarray, geometry: ViewGeometry) -> torch.Tensor:
    """(N, 4) xyxy original-image pixels -> (N, 4) float32 padded-square pixels (shifted by the pad offset)."""
    square = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).clone()
    square[:, 0::2] += geometry.pad_x
    square[:, 1::2] += geometry.pad_y
    return square


def class_aware_nms(boxes: torch.Tensor, scores, labels, iou_threshold: float) -> torch.Tensor:
    """Indices (int64, on the boxes' device) of the boxes that survive NMS within each label, by descending score,
    ties by input order. Boxes of different labels never suppress each other.

    Args:
        boxes: (N, 4) xyxy, any one pixel space (negative coordinates included).
        scores: (N,) float tensor or array.
        labels: (N,) integer tensor or array: the label (class) of each box.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    try:
        from mmcv.ops import batched_nms
    except ImportError as err:  # mmcv without compiled ops, or no mmcv at all
        raise ImportError(
            "class-aware NMS uses mmcv's compiled ops (mmcv.ops.batched_nms); install mmcv 2.1 built for your "
            "torch/CUDA (see requirements/constraints.txt)") from err
    boxes = boxes.float().contiguous()
    scores = torch.as_tensor(scores, device=boxes.device)  # its own precision for the final order
    labels = torch.as_tensor(labels, dtype=torch.long, device=boxes.device)
    # batched_nms separates labels by offsetting each label's boxes past the largest coordinate, which only holds
    # for non-negative coordinates; NMS is translation invariant, so move the boxes there first.
    _, keep = batched_nms(boxes - boxes.min().clamp(max=0), scores.float().contiguous(), labels,
                          dict(type="nms", iou_threshold=float(iou_threshold)))
    keep = keep.sort().values  # input order, then a stable sort: descending score, ties by input order
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


@MODELS.register_module()
def prepare_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    label_ids: np.ndarray,
    geometry: ViewGeometry,
    max_boxes: int = MAX_BOXES,
    iou_threshold: float = NMS_IOU_THRESHOLD,
) -> PreparedBoxes:
    """Apply SPEC 2's load-time rules to one image's boxes.

    Args:
        boxes: (N, 4) xyxy in original-image pixels (may reach outside the image).
        scores: (N,) detector scores.
        label_ids: (N,) integer label of each box; NMS only compares boxes of the same label.
        geometry: where the image sits in the high-res view (:class:`ViewGeometry`).

    Steps: shift by the pad offset (padded-square pixels); class-aware NMS (mmcv ``batched_nms``) at
    ``iou_threshold``; the limit rule: keep the ``max_boxes`` highest-scoring survivors, ties by file order;
    rescale to high-res input pixels; clip to the image's rectangle in the view (inside [0, S_high]: a box part
    over the padding has no image under it); drop boxes with zero width or height after clipping.
    """
    from mmdet.structures.bbox import HorizontalBoxes

    num = len(scores)
    if num == 0:
        return PreparedBoxes(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0)
    square = HorizontalBoxes(padded_square_boxes(boxes, geometry))
    keep = class_aware_nms(square.tensor, scores, label_ids, iou_threshold)[:max_boxes]

    high = square[keep]
    high.rescale_([geometry.scale, geometry.scale])
    x1, y1, x2, y2 = geometry.image_rect()
    coords = high.tensor
    coords[:, 0::2].clamp_(x1, x2)
    coords[:, 1::2].clamp_(y1, y2)
    valid = (high.widths > 0) & (high.heights > 0)
    return PreparedBoxes(coords[valid].contiguous(), keep[valid], int((~valid).sum()))
