"""Video-LLaVA's training JSONs -> LLaVA format as this project reads it.

Source: Video-LLaVA publishes LLaVA-like JSON lists: ``valley_.json`` (the 703K Valley video captions, stage 1),
``videochatgpt_tune_.json`` (its VideoInstruct-100K conversion, stage 2) and mixes of them with LLaVA's images
(``valley_llavaimage.json``, ``videochatgpt_llavaimage_tune.json``). Each item is ``{"id", "video" or "image",
"conversations": [{"from": "human"|"gpt", "value"}]}`` where:

- ``video`` / ``image`` is a path relative to Video-LLaVA's data root (``valley/...``, ``videochatgpt_tune/...``,
  ``llava_image/...``), a string or a list of them (its loader takes lists), and an item may have both;
- the question holds ``<video>`` or ``<image>``, not always at its start (its VideoInstruct conversion puts ``<video>``
  after the question in every other pair);
- ids are not unique strings (its loader renumbers every item), so repeated and numeric ids occur.

Out: one image or one video a sample (a one-element list becomes the path; several media in one item, or both kinds,
are left out, counted: the dataset takes one image or one video a sample), the placeholder at the start of the first
question, unique string ids, and the media paths with ``video_prefix`` / ``image_prefix`` put before them (their
folder under the dataset's ``video_folder`` / ``image_folder``).
"""
from typing import Iterable, List, Tuple

from xtuner.utils import DEFAULT_IMAGE_TOKEN

from ..dataset.video import DEFAULT_VIDEO_TOKEN
from .llava_format import ConversionReport, UniqueIds, finish, normalise_placeholder


def _one(value):
    """A media field as one path, or None if it names several (or is empty)."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 and isinstance(value[0], str) and value[0] else None
    return value if isinstance(value, str) and value else None


def convert_video_llava(items: Iterable[dict], source: str = "Video-LLaVA", video_prefix: str = "",
                        image_prefix: str = "") -> Tuple[List[dict], ConversionReport]:
    report, out = ConversionReport(source), []
    unique = UniqueIds(report)
    for number, item in enumerate(items):
        report.read += 1
        if not isinstance(item, dict):
            report.drop(f"not a JSON object: {type(item).__name__}", f"item {number}")
            continue
        sample_id = unique(item.get("id", f"item_{number}"))
        video, image = item.get("video"), item.get("image")
        if video is not None and image is not None:
            report.drop("image and video in one item: one image or one video a sample", sample_id)
            continue
        media = video if video is not None else image
        path = _one(media) if media is not None else None
        if media is not None and path is None:
            report.drop("several (or no) media files in one item: one image or one video a sample", sample_id)
            continue
        if isinstance(media, list):
            report.changed["one-element media list -> its path"] += 1
        sample = {"id": sample_id}
        token = None
        if video is not None:
            sample["video"], token = video_prefix + path, DEFAULT_VIDEO_TOKEN
        elif image is not None:
            sample["image"], token = image_prefix + path, DEFAULT_IMAGE_TOKEN
        turns = item.get("conversations")
        sample["conversations"] = normalise_placeholder(turns, token, report) if isinstance(turns, list) else turns
        finish(sample, report, out)
    return out, report
