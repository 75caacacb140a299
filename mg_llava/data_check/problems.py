"""What the pre-flight check can find, and whether each finding loses a sample.

A :class:`Problem` is one finding about one sample (or, for ``orphan_box_entry``, one box entry). Every kind in
:data:`KINDS` makes ``tools/check_data.py`` exit non-zero unless accepted (``--accept KIND``); ``drops_sample`` says
whether training leaves the sample out (or, for a file that turns unreadable mid-run, replaces it) rather than
training on a shortened one.
"""
from dataclasses import asdict, dataclass
from typing import Optional

# kind -> (drops the sample, what it means)
KINDS = {
    "missing_media": (True, "image/video file not found (no file of that name anywhere under the folder)"),
    "wrong_folder": (True, "image/video file not at its path, but a file of that name is elsewhere under the folder"),
    "not_an_image": (True, "the file is not an image (PIL cannot identify it)"),
    "corrupt_media": (True, "the file's header reads but it does not decode (truncated or damaged)"),
    "too_large": (True, "more pixels than the decoder's decompression-bomb limit"),
    "bad_sample": (True, "the record is not a usable LLaVA sample (JSON, fields, turns, placeholders)"),
    "no_box_entry": (True, "an image/video sample with no entry in its box file"),
    "bad_box_entry": (True, "the sample's box entry is malformed"),
    "answer_lost": (True, "max_length cuts off every answer token (XTuner drops the sample)"),
    "image_token_cut": (True, "max_length cuts off the image/video placeholder"),
    "over_max_positions": (True, "text + visual + box tokens pass the LLM's positions (the dataset refuses it)"),
    "truncated": (False, "longer than max_length: trained with its end cut off (the answer's start survives)"),
    "orphan_box_entry": (False, "a box entry that no sample of the config uses"),
}
MEDIA_KINDS = ("missing_media", "wrong_folder", "not_an_image", "corrupt_media", "too_large")


@dataclass(frozen=True)
class Problem:
    """One finding. ``file`` is the media file for media kinds, the box file for box kinds, else the annotation file;
    ``where`` locates the record ("item 12" / "line 12"; the entry position for orphan box entries)."""

    kind: str
    sample_id: Optional[str]
    file: str
    where: str
    detail: str
    source: int  # index of the dataset in the config's mixture
    tokens_cut: int = 0  # text tokens max_length cuts from the sample

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}; one of {sorted(KINDS)}")

    @property
    def drops_sample(self) -> bool:
        return KINDS[self.kind][0]

    def as_dict(self) -> dict:
        return asdict(self)
