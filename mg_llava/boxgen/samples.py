"""Reading the images to box from annotation files.

Supported inputs:

- LLaVA training files: a JSON list (or JSONL) of ``{"id", "image", "conversations"}``; ``image`` is relative to the
  image folder.
- Evaluation files: JSONL keyed by ``question_id`` (LLaVA's eval format) or TSV keyed by ``index`` (MMBench style).
  A TSV's ``image`` column holds base64 data; a short value that equals another row's ``index`` refers to that
  row's image (MMBench stores repeated images that way). An ``image_path`` column is read as a path.

One :class:`Sample` per distinct id, in the order ids first appear. Samples without an image (text-only) are
counted, not boxed; a sample with a ``video`` (a file or frames folder, relative to the video folder) is boxed frame
by frame (``Sample.video``), or, when video boxing is off (``video_folder=False``), counted as
``video_unsupported``. Several rows may share an id when they share the image (LLaVA does this); an id that names
two different images cannot be represented in the box file and raises :class:`DuplicateIdError` (or, with
``on_conflict='skip'``, is dropped and listed).
"""
import os.path as osp
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ..data_files import read_records, reads_file, record_format

ID_KEYS = ("id", "question_id", "index")


class SampleFormatError(ValueError):
    """A row of an annotation file that cannot be read (no id, bad JSON); the message names file and row."""


class DuplicateIdError(ValueError):
    """One id names two different images."""


@dataclass(frozen=True)
class Sample:
    """One image (or video) to box. Exactly one of ``path`` (absolute or relative to the working directory), ``b64``
    and ``video`` (a video file or frames folder; ``video_name`` is the sample's own ``video`` field)."""

    id: str
    path: Optional[str] = None
    b64: Optional[str] = None
    video: Optional[str] = None
    video_name: Optional[str] = None

    @property
    def source(self) -> str:
        if self.video is not None:
            return self.video
        return self.path if self.path is not None else f"<base64 {len(self.b64)} chars>"


def _rows(path: str):
    """Yield ``(row_number, dict)``; row numbers are 1-based lines (JSONL/TSV) or list positions (JSON)."""
    if not record_format(path):
        ext = osp.splitext(path)[1].lower()
        raise SampleFormatError(f"{path}: unknown annotation format {ext!r} (expected .json, .jsonl or .tsv)")
    for record in read_records(path, "annotation file"):
        if record.error is not None:
            raise SampleFormatError(f"{path}:{record.number}: invalid JSON ({record.error})")
        yield record.number, record.value


@reads_file("annotation file")
def read_samples(path: str, image_folder: Optional[str] = None, id_key: Optional[str] = None,
                 on_conflict: str = "error", video_folder=None):
    """Read ``path`` into ``(samples, counts)``.

    ``counts`` has the number of rows, of rows without an image (``text_only``), with a video
    (``video_unsupported``), rows merged into an earlier row with the same id and image
    (``duplicate_id_same_image``), and ``duplicate_id_conflict`` ids dropped under ``on_conflict='skip'`` (listed in
    ``conflicting_ids``). Videos are relative to ``video_folder`` (default: ``image_folder``); with
    ``video_folder=False`` they are only counted.
    """
    if on_conflict not in ("error", "skip"):
        raise ValueError(f"on_conflict must be 'error' or 'skip', got {on_conflict!r}")
    image_folder = image_folder or ""
    rows = list(_rows(path))
    counts = Counter(rows=len(rows))
    is_tsv = path.lower().endswith(".tsv")
    # TSV: index -> base64 image, to resolve rows whose image refers to another row's.
    by_index = {str(r.get("index")): r["image"] for _, r in rows if is_tsv and r.get("image")}

    samples, conflicts = {}, {}
    for row_no, row in rows:
        if not isinstance(row, dict):
            raise SampleFormatError(f"{path}:{row_no}: a sample must be an object, got {type(row).__name__}")
        key = id_key or next((k for k in ID_KEYS if k in row), None)
        if key is None or row.get(key) in (None, ""):
            raise SampleFormatError(f"{path}:{row_no}: no id (looked for {[id_key] if id_key else list(ID_KEYS)})")
        sample_id = str(row[key])
        if row.get("video") and video_folder is False:
            counts["video_unsupported"] += 1
            continue
        if row.get("video"):
            folder = image_folder if video_folder is None else video_folder
            sample = Sample(sample_id, video=osp.join(folder, row["video"]), video_name=row["video"])
            counts["video"] += 1
        elif row.get("image_path"):
            sample = Sample(sample_id, path=osp.join(image_folder, row["image_path"]))
        elif not row.get("image"):
            counts["text_only"] += 1
            continue
        elif isinstance(row["image"], list):
            raise SampleFormatError(f"{path}:{row_no}: sample {sample_id!r} has {len(row['image'])} images; "
                                    "the box file format holds one image per id")
        elif is_tsv:
            data = row["image"]
            if len(data) <= 64 and data in by_index:  # a reference to another row's image
                data = by_index[data]
            sample = Sample(sample_id, b64=data)
        else:
            sample = Sample(sample_id, path=osp.join(image_folder, row["image"]))

        first = samples.get(sample_id)
        if first is None:
            samples[sample_id] = sample
        elif first == sample:
            counts["duplicate_id_same_image"] += 1
        else:
            conflicts.setdefault(sample_id, (first.source, sample.source))

    if conflicts:
        if on_conflict == "error":
            shown = "; ".join(f"{i!r}: {a} vs {b}" for i, (a, b) in list(conflicts.items())[:5])
            raise DuplicateIdError(
                f"{path}: {len(conflicts)} id(s) name two different images, e.g. {shown}. The box file is keyed "
                "by id; fix the ids or pass on_conflict='skip' (--on-duplicate-conflict skip) to drop them."
            )
        for sample_id in conflicts:
            del samples[sample_id]
        counts["duplicate_id_conflict"] = len(conflicts)
    result = dict(counts)
    result["conflicting_ids"] = sorted(conflicts)
    return list(samples.values()), result
