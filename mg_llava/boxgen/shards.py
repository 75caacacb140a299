"""Shard part-files (atomic, resumable) and the merge into one box file.

Layout of an output folder::

    run.json                               what every shard and resume must agree on (input, sharding, models)
    parts/shard-00003-of-00008/
        chunk-00000123.jsonl               one per batch, written to a temp file and renamed
        segment-00000064.jsonl             chunks compacted (written and renamed before the chunks are deleted)
        done.json                          the shard finished
    boxes.json, summary.json, summary_boxes_per_image.png       written by :func:`merge_shards`

A part record is one sample: the released fields plus ``pos`` (its place in the input), ``tags``, and, when they
apply, ``mode`` (the image's original PIL mode if not RGB) and ``num_degenerate``; or, for a skipped sample,
``{"pos", "id", "skipped": reason, "error": message}``. Because every write is a rename, a killed job leaves only
whole files: it loses at most the batch in flight, and a crash between writing a segment and deleting its chunks
only duplicates records, which readers drop.
"""
import glob
import json
import os
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional

from ..data_files import read_json, read_records, reads_file
from .stats import box_count_histogram, write_summary

RUN_FILE = "run.json"
PARTS = "parts"
DONE = "done.json"
RELEASED_KEYS = ("id", "boxes", "scores", "labels")


class RunMismatchError(RuntimeError):
    """The output folder was started with other settings (input, sharding or models)."""


class IncompleteRunError(RuntimeError):
    """Merging before every shard finished, or with samples missing."""


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    tmp = osp.join(osp.dirname(path), f".tmp-{osp.basename(path)}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def part_dir(out_dir: str, shard: int, num_shards: int) -> str:
    return osp.join(out_dir, PARTS, f"shard-{shard:05d}-of-{num_shards:05d}")


def check_run(out_dir: str, run: dict) -> None:
    """Record ``run`` in ``out_dir/run.json``, or check it equals the one already there."""
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, RUN_FILE)
    if osp.exists(path):
        old = read_json(path, "box-generation run file")
        diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
        if diff:
            details = "; ".join(f"{k}: was {old.get(k)!r}, now {run.get(k)!r}" for k in diff)
            raise RunMismatchError(f"{out_dir} holds a run with other settings ({details}). Use a new output "
                                   "folder, or the same settings to resume.")
        return
    atomic_write(path, json.dumps(run, indent=2, sort_keys=True))


def _index(path: str) -> int:
    return int(osp.basename(path).split("-")[1].split(".")[0])


class ShardWriter:
    """Appends a shard's records batch by batch, one renamed file per batch, compacted every few batches."""

    def __init__(self, directory: str, chunks_per_segment: int = 64):
        self.directory = directory
        self.chunks_per_segment = chunks_per_segment
        os.makedirs(directory, exist_ok=True)
        for leftover in glob.glob(osp.join(directory, ".tmp-*")):  # a write cut short by a kill
            os.remove(leftover)
        existing = self._files("chunk") + self._files("segment")
        self.next_index = max((_index(p) for p in existing), default=-1) + 1

    def _files(self, kind: str) -> List[str]:
        return sorted(glob.glob(osp.join(self.directory, f"{kind}-*.jsonl")), key=_index)

    def write(self, records: List[dict]) -> None:
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        atomic_write(osp.join(self.directory, f"chunk-{self.next_index:08d}.jsonl"), text)
        self.next_index += 1
        if len(self._files("chunk")) >= self.chunks_per_segment:
            self.compact()

    def compact(self) -> None:
        chunks = self._files("chunk")
        if not chunks:
            return
        text = "".join(open(p, encoding="utf-8").read() for p in chunks)
        atomic_write(osp.join(self.directory, f"segment-{_index(chunks[0]):08d}.jsonl"), text)
        for p in chunks:
            os.remove(p)

    def finish(self, num_samples: int) -> None:
        self.compact()
        num_records = len(read_part_records(self.directory))
        if num_records != num_samples:
            raise IncompleteRunError(f"{self.directory}: {num_records} records for {num_samples} samples")
        atomic_write(osp.join(self.directory, DONE), json.dumps({"num_records": num_records}))


@reads_file("box-generation part folder")
def read_part_records(directory: str) -> Dict[str, dict]:
    """id -> record for every record in a shard's part folder (duplicates from an interrupted compaction dropped)."""
    records = {}
    files = glob.glob(osp.join(directory, "segment-*.jsonl")) + glob.glob(osp.join(directory, "chunk-*.jsonl"))
    for path in sorted(files, key=_index):
        for line in read_records(path, "box-generation part file"):
            if line.error is not None:
                raise IncompleteRunError(f"{path}:{line.number}: corrupt part record ({line.error})")
            records.setdefault(line.value["id"], line.value)
    return records


@reads_file("box-generation output folder")
def merge_shards(out_dir: str, output: Optional[str] = None, max_listed_skips: int = 100) -> dict:
    """Check every shard finished, then write the box file (input order) and the summary; return the summary.

    The box file is the released format: a JSON list of ``{"id", "boxes", "scores", "labels"}``, one sample per
    line; a video sample is ``{"id", "video", "frames": [{"boxes", "scores", "labels"}, ...]}`` (its frames count as
    images in the summary). Skipped samples are not in it: ``skipped.json`` beside it lists every one (id, reason,
    error) and the summary counts them by reason and shows the first ``max_listed_skips``.
    """
    run_path = osp.join(out_dir, RUN_FILE)
    if not osp.exists(run_path):
        raise IncompleteRunError(f"{out_dir}: no {RUN_FILE}; no box generation was started here")
    run = read_json(run_path, "box-generation run file")
    num_shards, num_samples = run["num_shards"], run["num_samples"]

    problems, shard_records = [], []
    for shard in range(num_shards):
        directory = part_dir(out_dir, shard, num_shards)
        expected = len(range(shard, num_samples, num_shards))
        if not osp.isdir(directory):
            problems.append(f"shard {shard}: never started (0/{expected} samples)")
        elif not osp.exists(osp.join(directory, DONE)):
            problems.append(f"shard {shard}: unfinished ({len(read_part_records(directory))}/{expected} samples)")
        else:
            shard_records.append(read_part_records(directory))
    if problems:
        raise IncompleteRunError(f"cannot merge {out_dir}: " + "; ".join(problems))

    by_pos, counts, skipped, modes = {}, [], Counter(), Counter()
    skipped_samples, no_tags, degenerate = [], 0, 0
    for records in shard_records:
        for record in records.values():
            if record["pos"] in by_pos:
                raise IncompleteRunError(f"sample {record['id']!r} at position {record['pos']} appears twice")
            if "skipped" in record:
                skipped[record["skipped"]] += 1
                skipped_samples.append({k: record[k] for k in ("pos", "id", "skipped", "error")})
                by_pos[record["pos"]] = None
                continue
            if "frames" in record:  # a video: the released per-frame format, one count per frame
                entry = dict(id=record["id"], video=record["video"],
                             frames=[{k: f[k] for k in RELEASED_KEYS[1:]} for f in record["frames"]])
                by_pos[record["pos"]] = json.dumps(entry, separators=(",", ":"))
                counts += [len(f["boxes"]) for f in record["frames"]]
                no_tags += sum(not f["tags"] for f in record["frames"])
                degenerate += record.get("num_degenerate", 0)
                continue
            by_pos[record["pos"]] = json.dumps({k: record[k] for k in RELEASED_KEYS}, separators=(",", ":"))
            counts.append(len(record["boxes"]))
            no_tags += not record["tags"]
            degenerate += record.get("num_degenerate", 0)
            if "mode" in record:
                modes[record["mode"]] += 1
    missing = num_samples - len(by_pos)
    if missing or set(by_pos) != set(range(num_samples)):
        raise IncompleteRunError(f"{out_dir}: {missing} of {num_samples} samples have no record")

    output = output or osp.join(out_dir, "boxes.json")
    lines = [by_pos[p] for p in range(num_samples) if by_pos[p] is not None]
    atomic_write(output, "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n")
    skipped_samples.sort(key=lambda s: s["pos"])
    for sample in skipped_samples:
        del sample["pos"]
    skipped_path = osp.join(osp.dirname(osp.abspath(output)), "skipped.json")
    atomic_write(skipped_path, json.dumps(skipped_samples, indent=1))

    summary = dict(
        box_file=osp.abspath(output),
        images=len(counts),
        boxes_total=sum(counts),
        boxes_per_image_mean=round(sum(counts) / len(counts), 3) if counts else 0.0,
        boxes_per_image_histogram=box_count_histogram(counts),
        images_without_tags=no_tags,
        degenerate_boxes_dropped=degenerate,
        converted_image_modes=dict(sorted(modes.items())),
        skipped=dict(sorted(skipped.items())),
        skipped_total=sum(skipped.values()),
        skipped_file=skipped_path,
        skipped_samples=skipped_samples[:max_listed_skips],
        input=run["input_counts"],
        num_shards=num_shards,
        generator=run["generator"],
    )
    write_summary(summary, osp.dirname(osp.abspath(output)))
    return summary
