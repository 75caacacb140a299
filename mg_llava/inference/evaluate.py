"""Batch evaluation: sharded, batched, resumable; writes per-sample predictions and a metrics JSON.

Output folder:

- ``predictions.shard<k>of<n>.jsonl``: one JSON record per prediction, appended and flushed batch by batch. Every
  record holds the item's ground truth, so metrics need only these files. A sample that cannot be prepared (bad
  image, missing boxes) under ``on_bad_sample='skip'`` gets a record ``{"id", "skipped": reason}``.
- ``run.json``: the benchmark file, format and settings; a resumed run must match them.
- ``metrics.json``: written by the process that finds every item predicted (any shard, or ``metrics_only``).
- ``mmvet_answers.json`` / ``llava_wild_answers.jsonl`` / ``video_qa_answers.jsonl``: answer files for the
  GPT-judged benchmarks.

Resuming: every ``predictions*.jsonl`` in the folder counts (whatever the shard layout that wrote it), and items
already there are skipped. Sharding: item ``i`` (in file order) belongs to shard ``i % num_shards``.
"""
import base64
import binascii
import json
import logging
import os
import os.path as osp
from glob import glob
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.logging import print_log
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mg_llava import data_files
from mg_llava.data_files import read_json, reads_file
from mg_llava.dataset import BadSample, BadSampleError, find_entry

from .benchmarks import Benchmark, bad_sample_counts
from .eval_items import EvalItem
from .generation import generate
from .metrics import extract_option, mme_metrics, multiple_choice_metrics, pope_metrics, vqa_metrics
from .preprocess import ImageLoadError, MissingBoxesError
from .video_qa import video_qa_metrics, write_video_qa_answers
from .visual_tokens import summarize, visual_token_counts

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
PREPARE_ERRORS = {ImageLoadError: "unreadable image", MissingBoxesError: "missing box entry"}


def resolve_shard(shard: Optional[int] = None, num_shards: Optional[int] = None):
    """``(shard, num_shards)`` from the arguments, else torchrun's ``RANK``/``WORLD_SIZE``, else ``(0, 1)``."""
    if shard is None and num_shards is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if shard is None or num_shards is None or not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards, got shard={shard}, num_shards={num_shards}")
    return shard, num_shards


class ModelAnswerer:
    """Prepares items with the model's preprocessor and answers batches of them.

    Args:
        loaded: a :class:`~mg_llava.inference.loading.LoadedModel`.
        box_table: the benchmark's box file (:func:`load_box_file`), looked up by the item's index/question_id.
        allow_missing_boxes: an item without a box entry gets zero boxes instead of a :class:`MissingBoxesError`.
        max_new_tokens: answer length limit.
    """

    def __init__(self, loaded, box_table=None, allow_missing_boxes: bool = False, max_new_tokens: int = 128,
                 source: str = ""):
        self.loaded = loaded
        self.box_table = box_table
        self.allow_missing_boxes = allow_missing_boxes
        self.max_new_tokens = max_new_tokens
        self.source = source

    def prepare(self, item: EvalItem) -> dict:
        where = f"{self.source} id {item.id!r}"
        if item.video:
            return self._prepare_video(item, where)
        boxes = None
        if self.box_table is not None:
            key = find_entry(self.box_table, (item.key, item.image_key))
            if key is not None:
                boxes = (self.box_table, key)
            elif not self.allow_missing_boxes:
                raise MissingBoxesError(f"{where}: no entry {item.key!r} in box file {self.box_table.path}")
        image = item.image
        if item.encoded:
            try:
                image = base64.b64decode(image, validate=True)
            except (binascii.Error, ValueError) as err:
                raise ImageLoadError(f"{where}: the image cell is not valid base64 ({err})") from err
        prepared = self.loaded.preprocessor.prepare_image(image, boxes, where=where)
        return self.loaded.preprocessor.sample(item.question, (), prepared, sample_id=item.id)

    def _prepare_video(self, item: EvalItem, where: str) -> dict:
        """A video item; its per-frame boxes are the video entry keyed by the question id, else the video name."""
        boxes = None
        if self.box_table is not None:
            key = find_entry(self.box_table, (item.key, item.image_key), video=True)
            if key is not None:
                boxes = (self.box_table, key)
            elif not self.allow_missing_boxes:
                raise MissingBoxesError(f"{where}: no video entry {item.key!r} or {item.image_key!r} in box file "
                                        f"{self.box_table.path}")
        prepared = self.loaded.preprocessor.prepare_video(item.image, boxes, where=where)
        return self.loaded.preprocessor.sample(item.question, (), sample_id=item.id, video=prepared)

    def answer(self, samples: Sequence[dict]) -> List[dict]:
        """``{"prediction", "visual_tokens", "granularity"}`` per sample."""
        preprocessor = self.loaded.preprocessor
        texts = generate(self.loaded.model, preprocessor.tokenizer, samples, max_new_tokens=self.max_new_tokens,
                         stop_words=preprocessor.stop_words, device=self.loaded.device)
        counts = visual_token_counts(self.loaded.model, samples)
        return [dict(prediction=text, **count) for text, count in zip(texts, counts)]


class _Prepared(Dataset):
    def __init__(self, items, prepare):
        self.items, self.prepare = items, prepare

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        try:
            return item, self.prepare(item), None
        except tuple(PREPARE_ERRORS) as err:
            return item, None, f"{PREPARE_ERRORS[type(err)]}: {err}"


def _as_list(batch):
    return batch


def make_record(fmt: str, item: EvalItem, prediction) -> dict:
    """``prediction``: the answer text, or a dict of it (``prediction``) and per-sample extras (visual tokens)."""
    extra = dict(prediction) if isinstance(prediction, dict) else dict(prediction=prediction)
    prediction = extra.pop("prediction")
    record = dict(id=item.id, prediction=prediction, **item.target, **extra)
    if fmt == "multiple_choice":
        record["pred_option"] = extract_option(prediction, item.target["options"])
    return record


@reads_file("predictions folder")
def read_records(out_dir: str) -> Dict[str, dict]:
    """Every record of every predictions file in ``out_dir`` by id (a line cut off by a kill is ignored)."""
    records, broken = {}, 0
    for path in sorted(glob(osp.join(out_dir, "predictions*.jsonl"))):
        for line in data_files.read_records(path, "predictions file"):
            if line.error is not None:
                broken += 1
                continue
            records[line.value["id"]] = line.value
    if broken:
        print_log(f"{out_dir}: ignored {broken} incomplete prediction line(s) (an interrupted write); those items "
                  f"are predicted again", "current", level=logging.WARNING)
    return records


def _check_run(out_dir: str, settings: dict) -> None:
    path = osp.join(out_dir, RUN_FILE)
    if osp.isfile(path):
        previous = read_json(path, "evaluation run file")
        if previous != settings:
            diff = {k: (previous.get(k), settings.get(k)) for k in set(previous) | set(settings)
                    if previous.get(k) != settings.get(k)}
            raise ValueError(f"{out_dir} holds predictions of a different run (setting: (before, now)): {diff}; "
                             f"use another --out-dir")
    else:
        _write_json(path, settings)


def _write_json(path: str, content) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, path)


def compute_metrics(fmt: str, records: Sequence[dict]) -> dict:
    """The format's metrics over the answered records (skipped ones excluded)."""
    answered = [r for r in records if "skipped" not in r]
    if not answered:
        return {}
    if fmt == "multiple_choice":
        scored = [r for r in answered if r.get("answer") is not None]
        return multiple_choice_metrics(scored) if scored else {}
    if fmt == "vqa":
        return vqa_metrics(answered)
    if fmt == "pope":
        metrics = pope_metrics(answered)
        categories = sorted({r["category"] for r in answered if r.get("category")})
        if categories:
            metrics["per_category"] = {c: pope_metrics([r for r in answered if r.get("category") == c])
                                       for c in categories}
        return metrics
    if fmt == "mme":
        return mme_metrics(answered)
    if fmt == "video_qa":
        return video_qa_metrics(answered)
    return {}


def write_answer_files(fmt: str, records: Sequence[dict], out_dir: str, model_id: str = "mg-llava") -> List[str]:
    """MM-Vet's ``{question_id: answer}`` JSON or LLaVA-Bench-in-the-Wild's answers JSONL."""
    answered = [r for r in records if "skipped" not in r]
    if fmt == "video_qa":
        return write_video_qa_answers(answered, out_dir)
    if fmt == "mmvet":
        path = osp.join(out_dir, "mmvet_answers.json")
        _write_json(path, {str(r["question_id"]): r["prediction"] for r in answered})
        return [path]
    if fmt == "llava_wild":
        path = osp.join(out_dir, "llava_wild_answers.jsonl")
        with open(path, "w") as f:
            for r in answered:
                f.write(json.dumps(dict(question_id=r["question_id"], prompt=r["question"], text=r["prediction"],
                                        answer_id=f"{model_id}-{r['question_id']}", model_id=model_id,
                                        metadata={})) + "\n")
        return [path]
    return []


def finalize(benchmark: Benchmark, out_dir: str) -> Optional[dict]:
    """Metrics (and answer files) once every item has a record; None while some are missing."""
    records = read_records(out_dir)
    ids = [item.id for item in benchmark.items]
    missing = [i for i in ids if i not in records]
    if missing:
        print_log(f"{len(ids) - len(missing)} of {len(ids)} items predicted; metrics are written once every shard "
                  f"has finished (or run again with --metrics-only)", "current")
        return None
    ordered = [records[i] for i in ids]
    skipped = [r for r in ordered if "skipped" in r]
    result = dict(
        benchmark=benchmark.path,
        format=benchmark.format,
        num_rows=benchmark.total_rows,
        num_items=len(ids),
        bad_rows_skipped=bad_sample_counts(benchmark.bad),
        samples_skipped=bad_sample_counts([BadSample(r["skipped"], r["id"], benchmark.path, "") for r in skipped]),
        metrics=compute_metrics(benchmark.format, ordered),
        visual_tokens_per_sample=summarize(ordered),
        answer_files=write_answer_files(benchmark.format, ordered, out_dir),
    )
    _write_json(osp.join(out_dir, METRICS_FILE), result)
    return result


def run_evaluation(benchmark: Benchmark, out_dir: str, prepare: Callable[[EvalItem], dict],
                   answer: Callable[[Sequence[dict]], List[str]], batch_size: int = 8, shard: Optional[int] = None,
                   num_shards: Optional[int] = None, on_bad_sample: str = "raise", num_workers: int = 0,
                   settings: Optional[dict] = None, progress: bool = True) -> Optional[dict]:
    """Predict this shard's unfinished items and, if that completes the benchmark, write and return the metrics.

    ``prepare(item) -> sample`` may raise :class:`ImageLoadError`/:class:`MissingBoxesError`: under
    ``on_bad_sample='raise'`` that stops the run (predictions so far are kept), under ``'skip'`` the item gets a
    skipped record. ``answer(samples)`` answers one batch: texts, or dicts of the text (``prediction``) and extras
    the record keeps (the visual tokens of :class:`ModelAnswerer`).
    """
    shard, num_shards = resolve_shard(shard, num_shards)
    os.makedirs(out_dir, exist_ok=True)
    _check_run(out_dir, dict(benchmark=osp.abspath(benchmark.path), format=benchmark.format,
                             num_items=len(benchmark.items), **(settings or {})))
    done = read_records(out_dir)
    mine = [item for i, item in enumerate(benchmark.items) if i % num_shards == shard and item.id not in done]
    path = osp.join(out_dir, f"predictions.shard{shard}of{num_shards}.jsonl")
    if osp.isfile(path) and osp.getsize(path):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
        if needs_newline:  # a write cut off by a kill: start the next record on its own line
            with open(path, "a") as f:
                f.write("\n")
    loader = DataLoader(_Prepared(mine, prepare), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_as_list)
    with open(path, "a", encoding="utf-8") as out, \
            tqdm(total=len(mine), desc=f"{osp.basename(benchmark.path)} shard {shard}/{num_shards}",
                 disable=not progress) as bar:
        for batch in loader:
            failed = [(item, error) for item, _, error in batch if error is not None]
            if failed and on_bad_sample == "raise":
                raise BadSampleError([BadSample(e, item.id, benchmark.path, "") for item, e in failed])
            good = [(item, sample) for item, sample, error in batch if error is None]
            predictions = answer([sample for _, sample in good]) if good else []
            if len(predictions) != len(good):
                raise RuntimeError(f"{len(predictions)} answers for {len(good)} samples")
            lines = [make_record(benchmark.format, item, p) for (item, _), p in zip(good, predictions)]
            lines += [dict(id=item.id, skipped=error, **item.target) for item, error in failed]
            out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
            out.flush()
            bar.update(len(batch))
    return finalize(benchmark, out_dir)
