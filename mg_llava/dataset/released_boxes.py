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

NMS (class-aware, IoU 0.2) finds the same survivors in both except at the edges, where the released rule does what
the released code did (:func:`released_class_aware_nms`): the released code called torchvision's ``batched_nms`` on
the boxes as float32 (after adding the pad offset in float64, as Python numbers), whose kernel sorts the scores
stably (ties: the earlier box in the file wins) and keeps a box whose float32 IoU equals the float threshold only
when that IoU is not above the threshold *as a double* (so an IoU of 0.2f = 0.20000000298 suppresses); the clean
rule uses mmcv's ``batched_nms`` (unstable sort, float comparison, float32 label offsets). The released per-label
limiter and the near-``max_length`` rule picked each label's boxes with ``torch.topk``, which orders tied scores its
own way; the released rule calls it the same way.

One difference stays, on purpose: torchvision's ``batched_nms`` separates labels by offsetting each label's boxes by
``label_index * (max coordinate + 1)``, with label indices from ``set(labels)`` (an order Python's string hashing
changes from process to process). With negative coordinates a box of one label could then overlap another label's
boxes and suppress them, differently in every run; here labels never suppress each other, and no label offset is
added at all (the offsets were exact for the released integer boxes; for float boxes the released float32 offsets
rounded coordinates by an amount that again depended on the hash order).
"""
from typing import Optional

import numpy as np
import torch

from ..registry import MODELS
from .box_rules import MAX_BOXES, NMS_IOU_THRESHOLD, PreparedBoxes, prepare_boxes
from .image_views import ViewGeometry

BOX_RULES = ("clean", "released")
NEAR_MAX_LENGTH = 50  # text tokens from max_length at which the released code kept one box per label
# torchvision's batched_nms (the released code's) runs label by label, then sorts the survivors with an unstable sort,
# above this many box coordinates on the CPU; below it, one NMS over label-offset boxes keeps the stable order
TORCHVISION_BATCHED_NMS_LOOP_NUMEL = 4000


def released_padded_square_boxes(boxes: np.ndarray, geometry: ViewGeometry) -> torch.Tensor:
    """(N, 4) xyxy original-image pixels -> (N, 4) float32 padded-square pixels, the pad offset added in float64
    before the one rounding to float32 (the released code added it to the box file's Python numbers)."""
    square = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    square[:, 0::2] += geometry.pad_x
    square[:, 1::2] += geometry.pad_y
    return torch.from_numpy(square.astype(np.float32))


def released_class_aware_nms(boxes: torch.Tensor, scores: torch.Tensor, labels, iou_threshold: float) -> torch.Tensor:
    """Indices (int64) of the boxes that survive NMS within each label, in the released code's order.

    Args:
        boxes: (N, 4) float32 xyxy, padded-square pixels (negative coordinates included).
        scores: (N,) float32.
        labels: (N,) integer label of each box.

    torchvision's NMS kernel per label, on the boxes' own coordinates (exact for any label id and coordinate):
    float32 IoU, suppressed when above ``iou_threshold`` as a double, scores sorted stably. Survivors by descending
    score, ties by input order, as torchvision's ``batched_nms`` returns them (unstably sorted above
    :data:`TORCHVISION_BATCHED_NMS_LOOP_NUMEL` coordinates, as there).
    """
    labels = np.asarray(labels).reshape(-1)
    if boxes.numel() <= TORCHVISION_BATCHED_NMS_LOOP_NUMEL and exact_integer_label_offsets(boxes, labels):
        return nms_with_integer_label_offsets(boxes, scores, labels, iou_threshold)
    keep = nms_label_by_label(boxes, scores, labels, iou_threshold)
    stable = boxes.numel() <= TORCHVISION_BATCHED_NMS_LOOP_NUMEL
    return keep[torch.sort(scores[keep], descending=True, stable=stable).indices]


def nms_label_by_label(boxes: torch.Tensor, scores: torch.Tensor, labels: np.ndarray, iou_threshold: float):
    """Survivors (int64, ascending) of torchvision's NMS run on each label's boxes alone."""
    from torchvision.ops import nms

    by_label = np.argsort(labels, kind="stable")
    kept = []
    for rows in np.split(by_label, np.flatnonzero(np.diff(labels[by_label])) + 1):
        if len(rows) > 1:  # a lone box always survives
            index = torch.from_numpy(rows)
            rows = rows[nms(boxes[index], scores[index], float(iou_threshold)).numpy()]
        kept.append(rows)
    return torch.from_numpy(np.sort(np.concatenate(kept)).astype(np.int64))


def _integer_offsets(boxes: torch.Tensor, labels: np.ndarray):
    """Per-box float32 shifts that move each label's boxes into its own band: whole numbers, so adding them to whole
    coordinates below 2**24 is exact and every float32 IoU stays bit for bit what it was."""
    low, high = boxes.min(), boxes.max()
    _, band = np.unique(labels, return_inverse=True)
    offsets = torch.from_numpy(band.reshape(-1).astype(np.float32)) * (high - low + 1) - low
    return offsets, float(high - low + 1) * (int(band.max()) + 1)


def exact_integer_label_offsets(boxes: torch.Tensor, labels: np.ndarray) -> bool:
    """Whether :func:`nms_with_integer_label_offsets` is exact here: whole coordinates, shifted values < 2**24."""
    if len(boxes) == 0 or not bool(torch.all(boxes == torch.round(boxes))):
        return False
    return _integer_offsets(boxes, labels)[1] < 2 ** 24


def nms_with_integer_label_offsets(boxes: torch.Tensor, scores: torch.Tensor, labels: np.ndarray,
                                   iou_threshold: float) -> torch.Tensor:
    """One NMS call for all labels (what :func:`nms_label_by_label` finds, in torchvision's output order: descending
    score, ties by input order); only for boxes :func:`exact_integer_label_offsets` accepts."""
    from torchvision.ops import nms

    offsets, _ = _integer_offsets(boxes, labels)
    return nms(boxes + offsets[:, None], scores, float(iou_threshold))


def released_per_label_boxes(keep: torch.Tensor, scores: torch.Tensor, label_ids, per_label: int) -> torch.Tensor:
    """The released limiter: survivors ``keep`` (NMS order) grouped by label, labels in order of their best box; a
    label with more than ``per_label`` boxes keeps the ``torch.topk`` of its scores (ties in topk's own order)."""
    groups = {}  # label -> positions in keep
    for position, row in enumerate(keep.tolist()):
        groups.setdefault(int(label_ids[row]), []).append(position)
    kept_scores = scores[keep]
    chosen = []
    for positions in groups.values():
        if len(positions) > per_label:
            top = kept_scores[positions].topk(per_label, largest=True).indices.tolist()
            positions = [positions[i] for i in top]
        chosen.extend(positions)
    return keep[torch.tensor(chosen, dtype=torch.long)]


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
    keep = torch.zeros(0, dtype=torch.long)
    square = released_padded_square_boxes(boxes, geometry)
    if len(scores):
        float_scores = torch.as_tensor(np.asarray(scores), dtype=torch.float32)  # the released scores were float32
        keep = released_class_aware_nms(square, float_scores, label_ids, iou_threshold)
        near_limit = (text_length is not None and max_length is not None
                      and text_length >= max_length - NEAR_MAX_LENGTH)
        if near_limit or len(keep) > max_boxes:
            per_label = 1 if near_limit else released_per_label_limit(max_boxes)
            keep = released_per_label_boxes(keep, float_scores, label_ids, per_label)

    # Rescale with rounding, then undo a centre crop of the (assumed) resized square: the released code computed
    # that square's side as int(side * scale), which can be S_high - 1, so the crop start is -1 and boxes move +1.
    coords = torch.round(square[keep] * geometry.scale).to(torch.int64)
    start = (int(geometry.side * geometry.scale) - high_res) // 2
    coords -= start
    inside = ~((coords[:, 2] < 0) | (coords[:, 3] < 0) | (coords[:, 0] > high_res) | (coords[:, 1] > high_res))
    coords, index = coords[inside], keep[inside]
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
