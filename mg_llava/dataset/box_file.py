"""Reading a box file in the released format into a :class:`~.box_table.BoxTable` (every entry checked).

Box file (released format): a JSON list of ``{"id": str, "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
"labels": [str, ...]}``, boxes xyxy in original-image pixels. Several samples may share an id (they share the image).
A video entry is ``{"id" (or only "video"), "video": path, "frames": [{"boxes", "scores", "labels"}, ...]}``, one
item per sampled frame (the dataset's frame choice), boxes in that frame's pixels; it is keyed by its id, else by its
video path, and each frame is kept as one row of the table.
"""
import logging
from itertools import chain
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log

from ..data_files import read_json_list, reads_file
from ..registry import MODELS
from .box_cache import load_cached
from .box_table import FRAME_SEPARATOR, BoxTable, frame_id


@MODELS.register_module()
@reads_file("box file")
def load_box_file(path: str, strict: bool = True, cache_dir: Optional[str] = None) -> BoxTable:
    """Read a box file in the released format (see the module docstring).

    Each entry is checked: the three lists have equal length, boxes are (N, 4) finite numbers with x2 >= x1 and
    y2 >= y1, scores are finite, labels are strings. An id may repeat only with identical content. With
    ``strict`` a bad entry raises ``ValueError`` naming the id and the file; otherwise it is left out and listed in
    ``table.bad`` (the dataset then applies its bad-sample policy to the samples using it). Boxes that reach
    outside the image or have zero area are valid here: the load-time rules clip and drop them
    (:func:`~.box_rules.prepare_boxes`).

    ``cache_dir``: keep the checked table there as ``.npy`` arrays (keyed by the file's path, size and mtime) and
    memory-map it on later reads. Parsing a released 1M-entry JSON takes minutes and gigabytes on every rank; the
    cache is read in about a second and its pages are shared by every process on the machine.
    """
    if cache_dir is not None:
        return load_cached(path, strict, cache_dir, _parse_box_file)
    return _parse_box_file(path, strict)


def _parse_box_file(path: str, strict: bool) -> BoxTable:
    raw = read_json_list(path, "box file")

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
