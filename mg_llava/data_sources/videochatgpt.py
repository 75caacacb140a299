"""VideoInstruct-100K (Video-ChatGPT) as published -> LLaVA format.

Source: one JSON list of ``{"video_id": "v_<YouTube id>", "q": question, "a": answer}``, several entries per video
(about 100K pairs over ~13K ActivityNet videos); the videos are ActivityNet's files, named ``<video_id>.<ext>``
(mostly ``.mp4``, some ``.mkv`` / ``.webm``).

Out: one sample per pair, ``{"id": "<video_id>_<k>" (k-th pair of that video), "video": "<video_id>.<ext>",
"conversations": [{"from": "human", "value": "<video>\\n<question>"}, {"from": "gpt", "value": answer}]}``. With a
video folder the extension is the one found on disk, and a pair whose video is not there is left out (counted);
without one, ``default_ext``.
"""
import os
from collections import Counter
from typing import Iterable, List, Optional, Tuple

from ..dataset.video import DEFAULT_VIDEO_TOKEN
from .llava_format import ConversionReport, finish


def _videos_on_disk(video_folder: str) -> dict:
    """video id (file name without extension) -> file name, for the files of ``video_folder``."""
    return {os.path.splitext(name)[0]: name for name in sorted(os.listdir(video_folder))}


def convert_videochatgpt(pairs: Iterable[dict], source: str = "VideoInstruct-100K",
                         video_folder: Optional[str] = None, default_ext: str = ".mp4",
                         prefix: str = "") -> Tuple[List[dict], ConversionReport]:
    """LLaVA samples from VideoInstruct-100K's pairs; ``prefix`` is put before each video path (its folder under the
    dataset's ``video_folder``)."""
    report, out, per_video = ConversionReport(source), [], Counter()
    on_disk = _videos_on_disk(video_folder) if video_folder is not None else None
    for pair in pairs:
        report.read += 1
        if not isinstance(pair, dict) or not all(isinstance(pair.get(k), str) for k in ("video_id", "q", "a")):
            report.drop("not a VideoInstruct pair: needs string video_id, q and a", (pair or {}).get("video_id")
                        if isinstance(pair, dict) else None)
            continue
        video_id, question, answer = pair["video_id"].strip(), pair["q"].strip(), pair["a"].strip()
        sample_id = f"{video_id}_{per_video[video_id]}"
        per_video[video_id] += 1
        if not question or not answer:
            report.drop("empty question or answer", sample_id)
            continue
        if on_disk is not None and video_id not in on_disk:
            report.drop(f"video not in {video_folder}", sample_id)
            continue
        name = on_disk[video_id] if on_disk is not None else video_id + default_ext
        finish({"id": sample_id, "video": prefix + name,
                "conversations": [{"from": "human", "value": f"{DEFAULT_VIDEO_TOKEN}\n{question}"},
                                  {"from": "gpt", "value": answer}]}, report, out)
    return out, report
