"""The text side of the check: every dataset of a config built by the training dataset class, and what its
``max_length`` and box file do to each sample.

Each dataset (each part of a mixture, with the mixture's shared settings) is built as ``xtuner train`` builds it,
by :class:`~mg_llava.dataset.LLaVABoxDataset` itself: the same reading and checking of the LLaVA file, the same
XTuner map functions, template and tokenizer, the same box file reader and matching. Three settings differ, so that
the check sees what training would silently lose instead of losing it:

- ``max_length`` is lifted: every sample is tokenised whole, and the check then applies XTuner's truncation
  (``encode_fn`` keeps ``input_ids[:max_length]`` and ``labels[:max_length]``) to count the tokens cut, the samples
  whose answer is cut entirely (XTuner drops them) and those whose image placeholder is cut;
- ``on_bad_sample='skip'``: the dataset lists its bad samples instead of stopping at them;
- ``allow_missing_boxes=True``: samples without a box entry stay, with box row -1, and are reported here (as lost
  unless the config itself allows them).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from xtuner.utils import IMAGE_TOKEN_INDEX

from ..dataset import LLaVABoxDataset
from ..dataset.video import VIDEO_TOKEN_INDEX
from ..registry import build
from .problems import Problem

NO_LIMIT = 2 ** 31 - 1  # max_length while checking: nothing is cut
# the dataset's reasons (BadSample.reason up to its first ':') -> problem kinds; any other reason is a bad sample
REASON_KINDS = {"bad box entry in": "bad_box_entry", "video box entry frames": "bad_box_entry",
                "missing box entry": "no_box_entry", "no answer tokens within max_length=": "answer_lost",
                "image token truncated": "image_token_cut"}


@dataclass
class SourceText:
    """One dataset of the config, tokenised whole, with its per-sample findings.

    Arrays have one item per sample the dataset kept (``dataset.text_data`` order); ``where`` locates each in its
    file."""

    index: int
    config: dict  # the merged dataset config (with the config's own max_length, on_bad_sample, ...)
    dataset: LLaVABoxDataset
    max_length: int
    ids: List[str]
    where: List[str]
    images: List[Optional[str]]
    videos: List[Optional[str]]
    visual: np.ndarray  # (n,) 1 for an image or video sample, 0 for text only
    full_length: np.ndarray  # (n,) text tokens before truncation
    kept_length: np.ndarray  # (n,) text tokens training keeps
    placeholders: np.ndarray  # (n,) image/video placeholders kept
    problems: List[Problem] = field(default_factory=list)
    skipped_ids: List[str] = field(default_factory=list)  # ids of records the dataset left out (they exist)

    @property
    def data_path(self) -> str:
        return self.config["data_path"]

    @property
    def box_file(self) -> Optional[str]:
        return self.config.get("box_file")


def dataset_configs(cfg) -> List[dict]:
    """The config's training datasets, each with the settings a mixture shares (as ``ConcatLLaVABoxDataset`` builds
    them: a part's own setting wins)."""
    dataset = cfg.train_dataloader.dataset
    parts = dataset.get("datasets")
    if parts is None:
        return [dict(dataset)]
    shared = {key: value for key, value in dataset.items() if key not in ("type", "datasets")}
    return [dict(shared, **part) for part in parts]


def read_source(index: int, config: dict, num_proc: int) -> SourceText:
    """Build dataset ``index`` of the config as training would (but for the three settings in the module docstring)
    and find what its ``max_length`` and box file cost."""
    if "data_path" not in config or config.get("offline_processed_text_folder"):
        raise ValueError(f"dataset {index}: the check reads LLaVA files (data_path); pre-tokenised folders "
                         f"(offline_processed_text_folder) are not checked")
    max_length = config["max_length"]
    dataset = build(dict(config, max_length=NO_LIMIT, on_bad_sample="skip", allow_missing_boxes=True,
                         num_proc=num_proc))
    data = dataset.text_data
    ids, where, images, videos = (data[name][:] for name in ("id", "where", "image", "video"))
    full = np.asarray(data["length"][:], dtype=np.int64)
    visual = np.asarray([int(i is not None or v is not None) for i, v in zip(images, videos)], dtype=np.int64)
    source = SourceText(index, config, dataset, max_length, ids, where, images, videos, visual, full,
                        np.minimum(full, max_length), visual.copy())
    path = config["data_path"]
    for bad in dataset.skipped:
        kind = next((kind for prefix, kind in REASON_KINDS.items() if bad.reason.startswith(prefix)), "bad_sample")
        source.problems.append(Problem(kind, bad.sample_id, path, bad.where, bad.reason, index))
        if bad.sample_id is not None:
            source.skipped_ids.append(bad.sample_id)
    _truncation(source)
    _missing_boxes(source)
    return source


def _truncation(source: SourceText) -> None:
    """XTuner's cut (``[:max_length]``) applied to the samples longer than ``max_length``."""
    data, max_length = source.dataset.text_data, source.max_length
    for row in np.flatnonzero(source.full_length > max_length).tolist():
        ids, labels = data[row]["input_ids"][:max_length], data[row]["labels"][:max_length]
        cut = int(source.full_length[row]) - max_length
        answer = sum(label >= 0 for label in labels)
        kept = sum(token in (IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX) for token in ids)
        source.placeholders[row] = kept
        tokens = f"{source.full_length[row]} text tokens > max_length={max_length}: {cut} cut"
        if answer == 0:
            kind, detail = "answer_lost", f"{tokens}, no answer token left"
        elif kept != source.visual[row]:
            kind, detail = "image_token_cut", f"{tokens}, the image/video placeholder among them"
        else:
            kind, detail = "truncated", f"{tokens}, {answer} answer tokens left"
        source.problems.append(Problem(kind, source.ids[row], source.data_path, source.where[row], detail,
                                       source.index, tokens_cut=cut))


def _missing_boxes(source: SourceText) -> None:
    """Image/video samples the dataset matched to no box entry (box row -1), when the config has a box file and does
    not allow them (``allow_missing_boxes``: they train with zero boxes, nothing is lost)."""
    if source.box_file is None or source.config.get("allow_missing_boxes", False):
        return
    for row in np.flatnonzero((source.dataset.box_rows < 0) & (source.visual > 0)).tolist():
        source.problems.append(Problem("no_box_entry", source.ids[row], source.data_path, source.where[row],
                                       f"no entry for this id in {source.box_file}", source.index))


def matched_box_keys(sources: List[SourceText]) -> Dict[str, set]:
    """{box file: the entry keys some sample of the config looks up (ids, and video paths)}."""
    keys: Dict[str, set] = {}
    for source in sources:
        if source.box_file is None:
            continue
        used = keys.setdefault(source.box_file, set())
        used.update(source.ids)
        used.update(source.skipped_ids)
        used.update(video for video in source.videos if video is not None)
    return keys
