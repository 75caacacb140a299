"""The pre-flight check of a training config's data: :func:`check_config` (``tools/check_data.py`` is its CLI).

Order: every dataset is built and tokenised as training does (:mod:`.text`), every unique image/video file is
decoded as training does (:mod:`.media`), then box entries no sample uses are listed, each sample's LLM tokens are
counted (text kept by ``max_length``, placeholders replaced by ``image_tokens`` per image/frame, plus its boxes after
the rules), and the report, its histograms and the run estimate are written.
"""
import json
import os
import os.path as osp
import resource
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..dataset.box_table import FRAME_SEPARATOR
from ..dataset.sample import sequence_length
from ..token_budget import config_budget
from .clean import samples_to_drop, write_clean
from .estimate import estimate
from .figures import save_histograms, summary
from .media import check_media, find_by_name, media_tasks, size_arrays
from .problems import KINDS, MEDIA_KINDS, Problem
from .text import SourceText, dataset_configs, matched_box_keys, read_source

FIRST_SHOWN = 5  # examples per kind in the printed report (the JSON lists all)
DEFAULT_GPUS = (1, 8, 16, 32, 64)


def check_config(cfg, out_dir: str, workers: int = 1, accept: Sequence[str] = (), write_clean_to: Optional[str] = None,
                 step_json: Optional[str] = None, gpus: Sequence[int] = DEFAULT_GPUS) -> dict:
    """Check every dataset of ``cfg`` (a loaded mmengine config); write ``report.json`` and the histograms under
    ``out_dir`` (and the clean files under ``write_clean_to``). Returns the report; ``report["ok"]`` is False when
    anything not accepted would be lost."""
    unknown = sorted(set(accept) - set(KINDS))
    if unknown:
        raise ValueError(f"--accept {unknown}: unknown kinds; the kinds are {sorted(KINDS)}")
    os.makedirs(out_dir, exist_ok=True)
    clock = _PhaseClock()
    sources = [read_source(i, config, workers) for i, config in enumerate(dataset_configs(cfg))]
    clock.lap("text")
    tasks = media_tasks(sources)
    results = check_media(sources, tasks, workers)
    clock.lap("media")
    problems = [p for source in sources for p in source.problems]
    problems += _media_problems(sources, tasks, results)
    problems += _orphan_entries(sources)
    budget = config_budget(cfg)
    tokens, boxes, raw_boxes = _tokens(sources, tasks, results, budget.image_tokens, problems)
    lost = {(p.source, p.where) for p in problems if p.drops_sample}  # what training leaves out
    kept_tokens = np.asarray([t for key, t in tokens.items() if key not in lost], dtype=np.int64)
    samples = sum(len(s.ids) + len(s.dataset.skipped) for s in sources)
    kept = samples - len(lost)
    sizes = size_arrays(results)
    figures = save_histograms(out_dir, sizes, kept_tokens, boxes, raw_boxes, max(s.max_length for s in sources))
    report = dict(
        config=cfg.filename, workers=workers, accepted=sorted(accept),
        datasets=[dict(data_path=s.data_path, image_folder=s.dataset.image_folder, box_file=s.box_file,
                       max_length=s.max_length, samples=len(s.ids) + len(s.dataset.skipped)) for s in sources],
        samples=samples, samples_kept_by_training=kept,
        problems=_by_kind(problems, accept),
        modality=_modality(sources, lost),
        truncation=_truncation(problems),
        llm_tokens=dict(summary(kept_tokens), image_tokens=budget.image_tokens,
                        note="per sample training keeps: text within max_length + image_tokens per image/frame + "
                             "its boxes after the rules"),
        image_sizes=dict(width=summary(sizes[:, 0]), height=summary(sizes[:, 1]),
                         files=len(tasks), unreadable_files=sum(r.kind is not None for r in results)),
        boxes_per_image=dict(in_box_file=summary(raw_boxes), after_rules=summary(boxes)),
        figures=figures,
        estimate=estimate(cfg, kept, float(kept_tokens.mean()) if len(kept_tokens) else 0.0, gpus, step_json),
    )
    not_accepted = {kind: entry["count"] for kind, entry in report["problems"].items() if not entry["accepted"]}
    report.update(ok=not not_accepted, not_accepted=not_accepted)
    if write_clean_to is not None:
        drop = samples_to_drop(problems, accept)
        report["clean"] = dict(write_clean(sources, drop, write_clean_to), samples_left_out=len(drop))
    clock.lap("report")
    report["seconds"], report["cpu_seconds"] = clock.seconds, clock.cpu
    report["problem_list"] = [p.as_dict() for p in problems]
    with open(osp.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    report["report_path"] = osp.join(out_dir, "report.json")
    return report


class _PhaseClock:
    """Wall seconds and CPU seconds per phase: this process's (``main``: what does not spread over workers) and its
    finished child processes' (``workers``: the tokenisation and decoding pools)."""

    def __init__(self):
        self.seconds, self.cpu = {}, {}
        self._last = self._now()

    @staticmethod
    def _now():
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return (time.perf_counter(), own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime)

    def lap(self, phase: str) -> None:
        now = self._now()
        self.seconds[phase] = now[0] - self._last[0]
        self.cpu[phase] = dict(main=now[1] - self._last[1], workers=now[2] - self._last[2])
        self._last = now


def _media_problems(sources: List[SourceText], tasks, results) -> List[Problem]:
    """One problem per sample of each file that failed; a missing file found by name elsewhere under the dataset's
    folder is ``wrong_folder``."""
    failed = [(task, result) for task, result in zip(tasks, results) if result.kind is not None]
    missing = [task for task, result in failed if result.kind == "missing_media"]
    folders = [s.dataset.video_folder if task.video else s.dataset.image_folder
               for task in missing for s in [sources[task.samples[0][0]]]]
    elsewhere = find_by_name(folders, [osp.basename(osp.normpath(t.path)) for t in missing]) if missing else {}
    problems = []
    for task, result in failed:
        kind, detail = result.kind, result.detail
        others = elsewhere.get(osp.basename(osp.normpath(task.path))) if kind == "missing_media" else None
        if others:
            kind, detail = "wrong_folder", f"{task.path} does not exist; a file of that name is at {others[0]}" + (
                f" (and {len(others) - 1} more)" if len(others) > 1 else "")
        for source_index, row in task.samples:
            source = sources[source_index]
            problems.append(Problem(kind, source.ids[row], task.path, source.where[row], detail, source_index))
    return problems


def _orphan_entries(sources: List[SourceText]) -> List[Problem]:
    """Entries of each box file that no sample of the config looks up (by id, or a video entry by its path)."""
    problems = []
    for box_file, used in matched_box_keys(sources).items():
        source = next(s for s in sources if s.box_file == box_file)
        table = source.dataset.box_table
        keys = dict.fromkeys(key.split(FRAME_SEPARATOR)[0] for key in list(table.ids) + list(table.bad))
        for key in keys:
            if key not in used:
                problems.append(Problem("orphan_box_entry", key, box_file, f"entry {key!r}",
                                        "no sample of the config has this id (or video path)", source.index))
    return problems


def _tokens(sources, tasks, results, image_tokens: int, problems: List[Problem]):
    """({(source, where): LLM tokens} of every sample whose files decode, boxes per image/frame after the rules and
    in the box file); adds ``over_max_positions`` problems where the dataset sets ``max_positions``."""
    box_counts = {}
    for task, result in zip(tasks, results):
        for (source_index, row), raw, kept in zip(task.samples, result.raw_boxes, result.kept_boxes):
            box_counts[source_index, row] = (raw, kept)
    tokens, raw_all, kept_all = {}, [], []
    for source in sources:
        limit = source.dataset.max_positions
        for row in range(len(source.ids)):
            if source.visual[row] and (source.index, row) not in box_counts:
                continue  # its file failed
            raw, kept = box_counts.get((source.index, row), ([], []))
            raw_all.extend(raw)
            kept_all.extend(kept)
            count = sequence_length(int(source.kept_length[row]), int(source.placeholders[row]), len(kept),
                                    image_tokens, sum(kept))
            tokens[source.index, source.where[row]] = count
            if limit is not None and count > limit:
                problems.append(Problem("over_max_positions", source.ids[row], source.data_path, source.where[row],
                                        f"{count} LLM tokens > max_positions={limit}", source.index))
    return tokens, np.asarray(kept_all, dtype=np.int64), np.asarray(raw_all, dtype=np.int64)


def _by_kind(problems: List[Problem], accept) -> Dict[str, dict]:
    grouped: Dict[str, List[Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.kind, []).append(problem)
    report = {}
    for kind, items in sorted(grouped.items()):
        entry = dict(count=len(items), accepted=kind in accept, drops_sample=KINDS[kind][0], meaning=KINDS[kind][1],
                     first=[_describe(p) for p in items[:FIRST_SHOWN]])
        if kind in MEDIA_KINDS:
            entry["files"] = len({p.file for p in items})
        report[kind] = entry
    return report


def _describe(problem: Problem) -> str:
    sample = f"id {problem.sample_id!r}" if problem.sample_id is not None else "no id"
    return f"{problem.file} {problem.where} ({sample}): {problem.detail}"


def _modality(sources: List[SourceText], lost) -> dict:
    counts, kept = Counter(), Counter()
    for source in sources:
        for row, (image, video) in enumerate(zip(source.images, source.videos)):
            kind = "video" if video is not None else "image" if image is not None else "text"
            counts[kind] += 1
            if (source.index, source.where[row]) not in lost:
                kept[kind] += 1
    return dict(read={k: counts[k] for k in ("text", "image", "video")},
                kept={k: kept[k] for k in ("text", "image", "video")})


def _truncation(problems: List[Problem]) -> dict:
    cut = [p for p in problems if p.tokens_cut]
    return dict(samples_over_max_length=len(cut), tokens_cut=sum(p.tokens_cut for p in cut),
                samples_losing_whole_answer=sum(p.kind == "answer_lost" for p in cut),
                samples_losing_image_token=sum(p.kind == "image_token_cut" for p in cut))
