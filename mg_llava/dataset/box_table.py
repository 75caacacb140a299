"""The box table: every entry of a box file in a few flat numpy arrays, and the one way to look an entry up.

Shape shorthand: N = boxes of one image. Boxes are xyxy in original-image pixels. Several samples may share an id
(they share the image). A video entry is kept as one row per sampled frame, keyed ``frame_id(key, t)``; its key is its
id, else its video path. :mod:`.box_file` reads the released format into a table, :mod:`.box_cache` keeps it as
memory-mapped arrays.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

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


class MissingBoxEntryError(KeyError):
    """No entry of a box table for a file; ``wanted`` is the key looked for first (for the caller's message)."""

    def __init__(self, table: BoxTable, wanted: str, video: bool):
        super().__init__(f"{table.path} has no {'video ' if video else ''}entry {wanted!r}")
        self.wanted = wanted


def find_entry(table: BoxTable, candidates: Iterable[Optional[str]], video: bool = False) -> Optional[str]:
    """The first of ``candidates`` (None skipped) that ``table`` holds: an image entry, or with ``video`` a video
    entry (its frames); None when it holds none of them. Every box-file lookup of chat, the web demo, evaluation
    and lmms-eval goes through here."""
    for key in candidates:
        if key is None:
            continue
        if (table.frame_rows(key) is not None) if video else (key in table):
            return str(key)
    return None


def entry_for_file(table: BoxTable, path: str, box_id: Optional[str] = None, video: bool = False) -> str:
    """The entry of ``table`` for the image or video file ``path``: ``box_id`` when given, else the table's only
    (video) entry, else the one named by the file (a video also by its path and its name with extension). Raises
    :class:`MissingBoxEntryError` when there is none."""
    name = osp.basename(osp.normpath(path))
    stem = osp.splitext(name)[0]
    if box_id:
        candidates = [box_id]
    elif video:
        candidates = table.video_keys if len(table.video_keys) == 1 else [path, name, stem]
    else:
        candidates = [table.ids[0] if len(table) == 1 else stem]
    key = find_entry(table, candidates, video)
    if key is None:
        raise MissingBoxEntryError(table, candidates[0], video)
    return key
