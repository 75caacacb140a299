"""Reading LLaVA conversation files and checking each sample before tokenisation.

A LLaVA file is a JSON list (``.json``) or one JSON object per line (``.jsonl``) of
``{"id", "image" (optional, relative to the image folder), "conversations": [{"from": "human"|"gpt", "value"}]}``;
a video sample has ``"video"`` (a file or a frames folder) instead of ``"image"`` and one ``<video>`` in its text.
"""
import logging
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log
from xtuner.utils import DEFAULT_IMAGE_TOKEN

from ..data_files import read_records, reads_file
from .video import DEFAULT_VIDEO_TOKEN

BAD_SAMPLE_POLICIES = ("raise", "skip")


@dataclass(frozen=True)
class BadSample:
    """A sample that cannot be trained on, and why."""

    reason: str
    sample_id: Optional[str]  # None when the record could not even be parsed
    file: str
    where: str  # "line 12" (JSONL), "item 12" (JSON list) or an image path

    def describe(self) -> str:
        sample = f"id {self.sample_id!r}" if self.sample_id is not None else "no id"
        return f"{self.file} {self.where} ({sample}): {self.reason}"

    def record(self, **extra) -> dict:
        """The sample as one line of a run's ``skipped_samples.jsonl``: id, file, where, reason (and ``extra``)."""
        return dict(id=self.sample_id, file=self.file, where=self.where, reason=self.reason, **extra)


class BadSampleError(ValueError):
    """Raised for bad samples under ``on_bad_sample='raise'``; ``.samples`` lists them.

    Raised inside a DataLoader worker, it reaches the main process as a ``BadSampleError`` again (torch rebuilds it
    from its message: the text, with the worker's traceback, names every sample; ``.samples`` is then empty).
    """

    def __init__(self, samples: Union[Sequence[BadSample], str], total: Optional[int] = None):
        if isinstance(samples, str):  # rebuilt from its message (DataLoader workers, unpickling)
            self.samples = []
            super().__init__(samples)
            return
        self.samples = list(samples)
        shown = "\n  ".join(s.describe() for s in self.samples[:10])
        more = f"\n  ... and {len(self.samples) - 10} more" if len(self.samples) > 10 else ""
        of = f" of {total}" if total is not None else ""
        super().__init__(
            f"{len(self.samples)} bad sample(s){of}:\n  {shown}{more}\n"
            "Fix the data, or set on_bad_sample='skip' to leave them out (they are counted and logged)."
        )


def apply_bad_sample_policy(bad: Sequence[BadSample], policy: str, total: int, what: str) -> None:
    """Raise (policy 'raise') or log a counted summary (policy 'skip') of ``bad``; nothing when empty."""
    if not bad:
        return
    if policy == "raise":
        raise BadSampleError(bad, total)
    reasons = {}
    for sample in bad:
        key = sample.reason.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    examples = "\n  ".join(s.describe() for s in bad[:5])
    print_log(
        f"{what}: skipped {len(bad)} of {total} samples (on_bad_sample='skip'): {summary}\n  {examples}",
        logger="current",
        level=logging.WARNING,
    )


@reads_file("LLaVA annotation file")
def read_llava_file(path: str) -> Tuple[List[dict], List[BadSample]]:
    """Parse and check a LLaVA file.

    Returns ``(records, bad)``: ``records`` are normalised dicts ``{"sample_index", "where", "id" (str), "image"
    (str or None), "conversations"}`` of the good samples in file order (``sample_index``: position in the file,
    ``where``: "line N" of a JSONL file or "item N" of a JSON list; ``video``: str or None);
    ``bad`` lists the rest with the reason. A ``.json`` file that is not valid JSON raises ``ValueError``
    (nothing in it can be located); in a ``.jsonl`` file each malformed line is one bad sample.
    """
    if not path.endswith((".json", ".jsonl")):
        raise ValueError(f"{path}: expected a .json or .jsonl LLaVA file")
    records, bad = [], []
    for position, row in enumerate(read_records(path, "LLaVA annotation file", fmt=osp.splitext(path)[1])):
        where, item = row.where, row.value
        if row.error is not None:
            bad.append(BadSample(f"malformed JSON line: {row.error}", None, path, where))
            continue
        sample_id = str(item["id"]) if isinstance(item, dict) and item.get("id") is not None else None
        reason = check_sample(item)
        if reason is not None:
            bad.append(BadSample(reason, sample_id, path, where))
            continue
        records.append(
            dict(
                sample_index=position,
                where=where,
                id=sample_id,
                image=item.get("image"),
                video=item.get("video"),
                conversations=item["conversations"],
            )
        )
    return records, bad


def check_sample(item) -> Optional[str]:
    """Why ``item`` cannot be trained on, or None. Reasons start with a short category before ':'."""
    if not isinstance(item, dict):
        return f"not a JSON object: {type(item).__name__}"
    if item.get("id") is None:
        return "missing id: every sample needs an 'id'"
    image, video = item.get("image"), item.get("video")
    if image is not None and (not isinstance(image, str) or not image):
        return f"bad image field: {image!r}"
    if video is not None and (not isinstance(video, str) or not video):
        return f"bad video field: {video!r}"
    if image is not None and video is not None:
        return "image and video: a sample has one 'image' or one 'video', not both"
    turns = item.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "empty conversation: 'conversations' must be a non-empty list"
    counts = {DEFAULT_IMAGE_TOKEN: 0, DEFAULT_VIDEO_TOKEN: 0}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return f"bad turn: turn {i} is not {{'from', 'value': str}}"
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            return f"bad turn order: turn {i} is from {turn.get('from')!r}, expected {expected!r} (human/gpt alternate)"
        for token in counts:
            count = turn["value"].count(token)
            if count and expected == "gpt":
                return f"{token[1:-1]} token in answer: turn {i} (an answer) contains {token}"
            counts[token] += count
    if len(turns) % 2:
        return "unanswered turn: the conversation ends with a human turn"
    image_tokens, video_tokens = counts[DEFAULT_IMAGE_TOKEN], counts[DEFAULT_VIDEO_TOKEN]
    if image is None and image_tokens:
        return f"image token without image: {image_tokens} {DEFAULT_IMAGE_TOKEN} but no 'image'"
    if image is not None and image_tokens != 1:
        return f"image token count: 'image' is set, so the text needs one {DEFAULT_IMAGE_TOKEN}, found {image_tokens}"
    if video is None and video_tokens:
        return f"video token without video: {video_tokens} {DEFAULT_VIDEO_TOKEN} but no 'video'"
    if video is not None and video_tokens != 1:
        return f"video token count: 'video' is set, so the text needs one {DEFAULT_VIDEO_TOKEN}, found {video_tokens}"
    return None
