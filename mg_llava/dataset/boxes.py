"""Object boxes: the released box-file format and the load-time rules of SPEC 2.

Shape shorthand: N = boxes of one image. Coordinate spaces (docs/interfaces.md):
original image pixels -> (+ pad offset) padded-square pixels -> (x scale = S_high / side) high-res input pixels.

Box file (released format): a JSON list of ``{"id": str, "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
"labels": [str, ...]}``, boxes xyxy in original-image pixels. Several samples may share an id (they share the image).
A video entry is ``{"id" (or only "video"), "video": path, "frames": [{"boxes", "scores", "labels"}, ...]}``, one
item per sampled frame (the dataset's frame choice), boxes in that frame's pixels; it is keyed by its id, else by its
video path, and each frame is kept as one row of the table.
"""
import hashlib
import json
import logging
import os
import os.path as osp
import shutil
from dataclasses import dataclass
from itertools import chain
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

from ..data_files import reads_file
from ..registry import MODELS
from .image_views import ViewGeometry

NMS_IOU_THRESHOLD = 0.2  # SPEC 2: class-aware NMS by label
MAX_BOXES = 100  # SPEC 3: at most 100 boxes per image
FRAME_SEPARATOR = "\x1f"  # table id of frame t of video entry k: f"{k}\x1f{t}" (no real id holds this character)


def frame_id(key: str, t: int) -> str:
    return f"{key}{FRAME_SEPARATOR}{t}"


@dataclass(frozen=True)
class BoxEntry:
    """One image's boxes as stored in the box file."""

    boxes: np.ndarray  # (N, 4) float32, xyxy in original-image pixels
    scores: np.ndarray  # (N,) float32
    labels: Tuple[str, ...]  # N tag names


class BoxTable:
    """Every entry of a box file, kept in a few flat numpy arrays.

    Flat arrays (not one Python list per image) keep the memory of 1M+ entries small and let forked DataLoader
    workers share it without copy-on-write churn. ``bad`` maps the ids of entries rejected by a non-strict read to
    the reason.
    """

    def __init__(self, path: str, ids: List[str], offsets, boxes, scores, label_ids, label_names, bad=None):
        self.path = path
        self.ids = ids
        self._row = {sample_id: row for row, sample_id in enumerate(ids)}
        self.offsets = offsets  # (E + 1,) int64: entry e owns rows offsets[e]:offsets[e + 1]
        self.boxes = boxes  # (total, 4) float32, original pixels
        self.scores = scores  # (total,) float32
        self.label_ids = label_ids  # (total,) int32 into label_names
        self.label_names = label_names
        self.bad: Dict[str, str] = dict(bad or {})
        self._frames: Dict[str, int] = {}  # video key -> frames in its entry
        for sample_id in ids:
            if FRAME_SEPARATOR in sample_id:
                key, t = sample_id.rsplit(FRAME_SEPARATOR, 1)
                self._frames[key] = max(self._frames.get(key, 0), int(t) + 1)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, sample_id) -> bool:
        return str(sample_id) in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def row(self, sample_id) -> int:
        """Row of ``sample_id``, or -1 when the file has no entry for it."""
        return self._row.get(str(sample_id), -1)

    @property
    def video_keys(self) -> List[str]:
        """Keys of the video entries (id, else video path)."""
        return list(self._frames)

    def frame_rows(self, key) -> Optional[List[int]]:
        """Rows of the frames of video entry ``key`` (its id or video path) in time order; None when absent."""
        count = self._frames.get(str(key))
        return None if count is None else [self._row[frame_id(str(key), t)] for t in range(count)]

    def arrays(self, row: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4) original pixels, scores (N,), label ids (N,)) of entry ``row``; views, do not modify."""
        start, stop = self.offsets[row], self.offsets[row + 1]
        return self.boxes[start:stop], self.scores[start:stop], self.label_ids[start:stop]

    def __getitem__(self, sample_id) -> BoxEntry:
        row = self.row(sample_id)
        if row < 0:
            raise KeyError(f"no box entry for id {sample_id!r} in {self.path}")
        boxes, scores, label_ids = self.arrays(row)
        return BoxEntry(boxes.copy(), scores.copy(), tuple(self.label_names[i] for i in label_ids))


@MODELS.register_module()
@reads_file("box file")
def load_box_file(path: str, strict: bool = True, cache_dir: Optional[str] = None) -> BoxTable:
    """Read a box file in the released format (see the module docstring).

    Each entry is checked: the three lists have equal length, boxes are (N, 4) finite numbers with x2 >= x1 and
    y2 >= y1, scores are finite, labels are strings. An id may repeat only with identical content. With
    ``strict`` a bad entry raises ``ValueError`` naming the id and the file; otherwise it is left out and listed in
    ``table.bad`` (the dataset then applies its bad-sample policy to the samples using it). Boxes that reach
    outside the image or have zero area are valid here: the load-time rules clip and drop them (:func:`prepare_boxes`).

    ``cache_dir``: keep the checked table there as ``.npy`` arrays (keyed by the file's path, size and mtime) and
    memory-map it on later reads. Parsing a released 1M-entry JSON takes minutes and gigabytes on every rank; the
    cache is read in about a second and its pages are shared by every process on the machine.
    """
    if cache_dir is not None:
        return _load_cached(path, strict, cache_dir)
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"box file {path} is not valid JSON: {err}") from err
    if not isinstance(raw, list):
        raise ValueError(f"box file {path} must hold a JSON list of entries, got {type(raw).__name__}")

    # Per entry in Python: structure and repeated ids; then all numbers at once in numpy (_build_table).
    # A video entry becomes one item per frame (id f"{key}\x1f{t}"); its problems are reported under its key.
    items: List[Tuple[int, str, dict]] = []  # (position in the file, table id, {boxes, scores, labels})
    bad: Dict[str, Tuple[int, str]] = {}  # id -> (position in the file, reason)
    video_frames: Dict[str, int] = {}  # video key -> frames of its first entry
    for position, entry in enumerate(raw):
        if isinstance(entry, dict) and "frames" in entry:
            key = entry.get("id", entry.get("video"))
            if key is None:
                raise ValueError(f"box file {path} entry #{position} is a video entry with neither 'id' nor 'video'")
            key, frames = str(key), entry["frames"]
            if not isinstance(frames, list) or not frames:
                bad.setdefault(key, (position, "a video entry needs a non-empty 'frames' list"))
                continue
            if video_frames.setdefault(key, len(frames)) != len(frames):
                bad.setdefault(key, (position, "appears more than once with different numbers of frames"))
                continue
            for t, frame in enumerate(frames):
                if not isinstance(frame, dict):
                    bad.setdefault(key, (position, f"frame {t} is not an object"))
                    break
                items.append((position, frame_id(key, t), frame))
            continue
        if not isinstance(entry, dict) or "id" not in entry:
            raise ValueError(f"box file {path} entry #{position} has no 'id' (got {str(entry)[:80]!r})")
        items.append((position, str(entry["id"]), entry))

    first: Dict[str, dict] = {}  # id -> its first entry
    for position, sample_id, entry in items:
        reason = _structure_problem(entry)
        if reason is None and sample_id in first:
            earlier = first[sample_id]
            if any(entry[key] != earlier[key] for key in ("boxes", "scores", "labels")):
                reason = "appears more than once with different boxes"
        if reason is not None:
            bad.setdefault(sample_id, (position, reason))
        first.setdefault(sample_id, entry)
    _move_frame_problems_to_videos(bad)

    positions = {sample_id: position for position, sample_id, _ in reversed(items)}
    ids = [sample_id for sample_id in first if _video_key(sample_id) not in bad]
    try:
        table = _build_table(path, ids, [first[sample_id] for sample_id in ids])
    except _BadNumbers as err:
        bad.update({sample_id: (positions[sample_id], reason) for sample_id, reason in err.reasons.items()})
        _move_frame_problems_to_videos(bad)
    if not bad:
        return table
    if strict:
        sample_id, (_, reason) = min(bad.items(), key=lambda item: item[1][0])
        raise ValueError(f"box file {path}, id {sample_id!r}: {reason}")
    print_log(
        f"box file {path}: {len(bad)} bad entries left out, e.g. "
        + "; ".join(f"{sample_id!r}: {reason}" for sample_id, (_, reason) in list(bad.items())[:3]),
        logger="current",
        level=logging.WARNING,
    )
    ids = [sample_id for sample_id in ids if _video_key(sample_id) not in bad]
    table = _build_table(path, ids, [first[sample_id] for sample_id in ids])
    table.bad = {sample_id: reason for sample_id, (_, reason) in bad.items()}
    return table


def _video_key(sample_id: str) -> str:
    """The entry key a table id belongs to (a frame's video key, else the id itself)."""
    return sample_id.rsplit(FRAME_SEPARATOR, 1)[0] if FRAME_SEPARATOR in sample_id else sample_id


def _move_frame_problems_to_videos(bad: Dict[str, Tuple[int, str]]) -> None:
    """A bad frame makes its whole video entry bad: report it under the video's key as 'frame t: reason'."""
    for sample_id in [s for s in bad if FRAME_SEPARATOR in s]:
        position, reason = bad.pop(sample_id)
        key, t = sample_id.rsplit(FRAME_SEPARATOR, 1)
        bad.setdefault(key, (position, f"frame {t}: {reason}"))


_CACHE_ARRAYS = ("offsets", "boxes", "scores", "label_ids")


def _cache_key(path: str, strict: bool) -> str:
    stat = os.stat(path)
    ident = f"{osp.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|strict={strict}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def _load_cached(path: str, strict: bool, cache_dir: str) -> BoxTable:
    folder = osp.join(cache_dir, _cache_key(path, strict))
    if not osp.isfile(osp.join(folder, "meta.json")):
        table = load_box_file(path, strict=strict)
        # Written beside the final folder, then renamed: readers never see a half-written cache, and when several
        # ranks race, the first rename wins and the others drop their copy.
        tmp = f"{folder}.tmp-{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        for name in _CACHE_ARRAYS:
            np.save(osp.join(tmp, f"{name}.npy"), getattr(table, name))
        with open(osp.join(tmp, "meta.json"), "w") as f:
            json.dump(dict(source=osp.abspath(path), ids=table.ids, label_names=table.label_names, bad=table.bad), f)
        try:
            os.rename(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print_log(f"box file {path}: cached as arrays in {folder}", logger="current")
    with open(osp.join(folder, "meta.json")) as f:
        meta = json.load(f)
    arrays = {name: np.load(osp.join(folder, f"{name}.npy"), mmap_mode="r") for name in _CACHE_ARRAYS}
    return BoxTable(path, meta["ids"], label_names=meta["label_names"], bad=meta["bad"], **arrays)


class _BadNumbers(Exception):
    def __init__(self, reasons: Dict[str, str]):
        super().__init__(reasons)
        self.reasons = reasons


def _build_table(path: str, ids: List[str], entries: List[dict]) -> BoxTable:
    """The table of structurally checked ``entries``; raises ``_BadNumbers`` naming entries with bad values.

    The values of all entries are checked together (C-level iteration, numpy), which keeps a 1M-entry file fast;
    only when something is wrong are the entries looked at one by one to name the culprits.
    """
    counts = np.fromiter(map(len, (entry["scores"] for entry in entries)), dtype=np.int64, count=len(entries))
    total = int(counts.sum())
    flat_boxes = list(chain.from_iterable(entry["boxes"] for entry in entries))
    flat_scores = list(chain.from_iterable(entry["scores"] for entry in entries))
    flat_labels = list(chain.from_iterable(entry["labels"] for entry in entries))
    if (
        set(map(type, flat_labels)) - {str}
        or set(map(type, flat_boxes)) - {list}
        or set(map(len, flat_boxes)) - {4}
        or set(map(type, chain(flat_scores, chain.from_iterable(flat_boxes)))) - {int, float}
    ):  # something is off: find which entries, one by one
        reasons = {sample_id: _values_problem(entry) for sample_id, entry in zip(ids, entries)}
        raise _BadNumbers({sample_id: r for sample_id, r in reasons.items() if r is not None})
    boxes = np.fromiter(chain.from_iterable(flat_boxes), dtype=np.float64, count=4 * total).reshape(total, 4)
    scores = np.fromiter(flat_scores, dtype=np.float64, count=total)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    owner = np.repeat(np.arange(len(ids)), counts)  # entry of each box
    reasons = {}
    non_finite = ~(np.isfinite(boxes).all(1) & np.isfinite(scores))
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    for mask, reason in ((non_finite, "non-finite box or score"), (inverted, "x2 < x1 or y2 < y1")):
        for row in np.flatnonzero(mask):
            entry_index = owner[row]
            where = f"at index {row - offsets[entry_index]}: box {boxes[row].tolist()}, score {scores[row]}"
            reasons.setdefault(ids[entry_index], f"{reason} {where}")
    if reasons:
        raise _BadNumbers(reasons)
    label_names = list(dict.fromkeys(flat_labels))
    vocabulary = {name: index for index, name in enumerate(label_names)}
    label_ids = np.fromiter(map(vocabulary.__getitem__, flat_labels), dtype=np.int32, count=total)
    return BoxTable(path, ids, offsets, boxes.astype(np.float32), scores.astype(np.float32), label_ids, label_names)


def _structure_problem(entry: dict) -> Optional[str]:
    missing = [key for key in ("boxes", "scores", "labels") if key not in entry]
    if missing:
        return f"missing keys {missing}"
    if not all(isinstance(entry[key], list) for key in ("boxes", "scores", "labels")):
        return "boxes, scores and labels must be lists"
    boxes, scores, labels = entry["boxes"], entry["scores"], entry["labels"]
    if not (len(boxes) == len(scores) == len(labels)):
        return f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels"
    return None


def _values_problem(entry: dict) -> Optional[str]:
    """What is wrong with the values of a structurally valid entry (the same rules as :func:`_build_table`)."""
    if not all(isinstance(name, str) for name in entry["labels"]):
        return "labels must be strings"
    for box in entry["boxes"]:
        if not isinstance(box, list) or len(box) != 4:
            return f"boxes must be a list of [x1, y1, x2, y2], got {box!r}"
    values = chain(entry["scores"], chain.from_iterable(entry["boxes"]))
    wrong = [value for value in values if type(value) not in (int, float)]
    if wrong:
        return f"boxes/scores are not numbers: {wrong[:3]!r}"
    return None


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


def class_aware_nms(square: torch.Tensor, scores: np.ndarray, label_ids: np.ndarray,
                    iou_threshold: float) -> np.ndarray:
    """Indices (int64) of the boxes that survive NMS within each label, by descending score, ties by file order.

    ``square``: (N, 4) xyxy boxes (any one pixel space); ``scores``, ``label_ids``: (N,).
    """
    from mmcv.ops import batched_nms

    # batched_nms separates labels by offsetting each label's boxes past the largest coordinate, which only holds
    # for non-negative coordinates; NMS is translation invariant, so move the boxes there first.
    nms_input = square - square.min().clamp(max=0)
    _, keep = batched_nms(
        nms_input, torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(label_ids, dtype=torch.long),
        dict(type="nms", iou_threshold=iou_threshold),
    )
    keep = keep.numpy()
    order = np.lexsort((keep, -np.asarray(scores)[keep]))  # descending score, ties by file order
    return keep[order].astype(np.int64)


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
    keep = class_aware_nms(square.tensor, scores, label_ids, iou_threshold)
    keep = torch.from_numpy(keep[:max_boxes])

    high = square[keep]
    high.rescale_([geometry.scale, geometry.scale])
    x1, y1, x2, y2 = geometry.image_rect()
    coords = high.tensor
    coords[:, 0::2].clamp_(x1, x2)
    coords[:, 1::2].clamp_(y1, y2)
    valid = (high.widths > 0) & (high.heights > 0)
    return PreparedBoxes(coords[valid].contiguous(), keep[valid], int((~valid).sum()))
