"""The released box rule: the load-time box handling the released MG-LLaVA checkpoints were trained with (SPEC 2).

Use it to evaluate or fine-tune the released checkpoints on the distribution they saw; train new models with the
clean rule (:func:`~mg_llava.dataset.box_rules.prepare_boxes`), the default. Where the two differ:

=================  ==============================================  =============================================
step               clean rule                                      released rule (reproduced as it was)
=================  ==============================================  =============================================
limit              the ``max_boxes`` best scores                   only above ``max_boxes`` survivors: at most 20
                                                                   per label (5 when ``max_boxes`` < 50; 50
                                                                   crashed), no overall cap, grouped by label
near max_length    nothing                                         text within 50 tokens of ``max_length``: 1 box
                                                                   per label, whatever the count
rescale            ``x * S_high / side`` (float)                   rounded half to even; the view side taken as
                                                                   ``int(side * (S_high / side))``, which is
                                                                   S_high - 1 for some sides: then every box moves
                                                                   by +1 px (a bug, kept on purpose)
clip               to the image's rectangle in the view            to [0, S_high] (x1, y1 >= 0; x2, y2 <= S_high);
                                                                   boxes entirely outside are dropped
zero-area boxes    dropped                                         kept
no boxes           zero box tokens                                 one dummy box ``[0, 0, 0, 0]``
=================  ==============================================  =============================================

NMS (class-aware, IoU 0.2) is the same in both, and so is the order of survivors (descending score, ties by file
order, where the released code left ties to the sort).
"""
from typing import Optional

import numpy as np
import torch

from ..registry import MODELS
from .box_rules import (MAX_BOXES, NMS_IOU_THRESHOLD, PreparedBoxes, class_aware_nms, padded_square_boxes,
                        prepare_boxes)
from .image_views import ViewGeometry

BOX_RULES = ("clean", "released")
NEAR_MAX_LENGTH = 50  # text tokens from max_length at which the released code kept one box per label


def released_per_label_limit(max_boxes: int) -> int:
    """Boxes kept per label when more than ``max_boxes`` survive NMS (the released code's table)."""
    if max_boxes > 50:
        return 20
    if max_boxes < 50:
        return 5
    raise ValueError("max_boxes=50 has no per-label limit in the released box rule (the released code crashed on "
                     "it); use another max_boxes")


@MODELS.register_module()
def prepare_boxes_released(
    boxes: np.ndarray,
    scores: np.ndarray,
    label_ids: np.ndarray,
    geometry: ViewGeometry,
    max_boxes: int = MAX_BOXES,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    text_length: Optional[int] = None,
    max_length: Optional[int] = None,
) -> PreparedBoxes:
    """Apply the released load-time rules (module docstring) to one image's boxes.

    Args:
        boxes: (N, 4) xyxy in original-image pixels; scores (N,); label_ids (N,); geometry as for the clean rule.
        text_length, max_length: the sample's text tokens and the dataset's text limit; the near-``max_length``
            rule applies only when both are given (training; chat and evaluation prompts are far from the limit).

    Returns boxes (M >= 1, 4) float32 in high-res input pixels (integers), ``index`` the input row of each box
    (-1 for the dummy box) and ``num_degenerate`` the boxes dropped for lying outside [0, S_high].
    """
    high_res = round(geometry.scale * geometry.side)  # S_high (geometry.scale is S_high / side)
    keep = np.zeros(0, dtype=np.int64)
    square = padded_square_boxes(boxes, geometry)
    if len(scores):
        keep = class_aware_nms(square, scores, label_ids, iou_threshold).numpy()
        near_limit = (text_length is not None and max_length is not None
                      and text_length >= max_length - NEAR_MAX_LENGTH)
        if near_limit or len(keep) > max_boxes:
            per_label = 1 if near_limit else released_per_label_limit(max_boxes)
            groups = {}  # label -> its survivors by descending score; labels in order of their best box
            for row in keep:
                groups.setdefault(int(label_ids[row]), []).append(row)
            keep = np.asarray([row for rows in groups.values() for row in rows[:per_label]], dtype=np.int64)

    # Rescale with rounding, then undo a centre crop of the (assumed) resized square: the released code computed
    # that square's side as int(side * scale), which can be S_high - 1, so the crop start is -1 and boxes move +1.
    coords = torch.round(square[torch.from_numpy(keep)] * geometry.scale).to(torch.int64)
    start = (int(geometry.side * geometry.scale) - high_res) // 2
    coords -= start
    inside = ~((coords[:, 2] < 0) | (coords[:, 3] < 0) | (coords[:, 0] > high_res) | (coords[:, 1] > high_res))
    coords, index = coords[inside], torch.from_numpy(keep)[inside]
    coords[:, :2] = coords[:, :2].clamp(min=0)
    coords[:, 2:] = coords[:, 2:].clamp(max=high_res)
    num_outside = int((~inside).sum())
    if len(coords) == 0:  # the released checkpoints always saw at least one box token
        return PreparedBoxes(torch.zeros(1, 4), torch.full((1,), -1, dtype=torch.long), num_outside)
    return PreparedBoxes(coords.float(), index, num_outside)


def apply_box_rule(rule: str, boxes: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, geometry: ViewGeometry,
                   max_boxes: int = MAX_BOXES, iou_threshold: float = NMS_IOU_THRESHOLD,
                   text_length: Optional[int] = None, max_length: Optional[int] = None) -> PreparedBoxes:
    """One image's boxes under ``rule`` (one of :data:`BOX_RULES`)."""
    if rule == "clean":
        return prepare_boxes(boxes, scores, label_ids, geometry, max_boxes, iou_threshold)
    if rule == "released":
        return prepare_boxes_released(boxes, scores, label_ids, geometry, max_boxes, iou_threshold, text_length,
                                      max_length)
    raise ValueError(f"unknown box rule {rule!r}; one of {BOX_RULES}")
