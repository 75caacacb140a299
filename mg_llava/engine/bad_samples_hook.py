"""Nothing lost silently: every sample a training run leaves out or replaces is listed in its work dir.

Under ``on_bad_sample='skip'`` a :class:`~mg_llava.dataset.LLaVABoxDataset` leaves bad samples out when it is built
(``dataset.skipped``) and, when an image turns out unreadable while training, serves the next sample in its place.
That replacement happens in a DataLoader worker (or on another rank), where no count of the main process sees it, so
the served sample carries the record of what it replaced through the collate (``data_samples['replaced']``) to the
training loop, where this hook collects it. All ranks' records meet on rank 0 (one integer all-reduce per
iteration, a gather only when some rank has records), which writes ``<work_dir>/skipped_samples.jsonl`` at the start,
at every checkpoint and at the end, and logs a summary line with the count at the end. One JSON object a line::

    {"id": "000000033471", "file": "data/train.json", "where": "item 12", "reason": "missing box entry: ...",
     "when": "start-up"}
    {"id": "GCC_train_001", "file": "data/train.json", "where": "item 40", "reason": "unreadable image (missing): ...",
     "when": "replaced", "iteration": 7, "rank": 1}

A resumed run keeps the replacements recorded up to the checkpoint it resumes from.
"""
import json
import logging
import os
import os.path as osp
from typing import List

import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

RECORDS_FILE = "skipped_samples.jsonl"


def _leaf_datasets(dataset) -> list:
    """The datasets of a mixture (``ConcatLLaVABoxDataset`` and the like), or the dataset itself."""
    parts = getattr(dataset, "datasets", None)
    if parts is None:
        return [dataset]
    return [leaf for part in parts for leaf in _leaf_datasets(part)]


def startup_records(dataset) -> List[dict]:
    """The samples ``dataset`` (or each part of a mixture) left out when it was built."""
    return [bad.record(when="start-up") for part in _leaf_datasets(dataset) for bad in getattr(part, "skipped", ())]


@HOOKS.register_module()
class BadSamplesHook(Hook):
    """Writes every sample left out at start-up or replaced during training to ``<work_dir>/<filename>``.

    Args:
        filename: the JSON-lines file in the work dir.
    """

    priority = "NORMAL"  # after_train_iter runs before the CheckpointHook's (VERY_LOW): a checkpoint's file is current

    def __init__(self, filename: str = RECORDS_FILE):
        self.filename = filename
        self.startup: List[dict] = []
        self.replaced: List[dict] = []

    def path(self, runner) -> str:
        return osp.join(runner.work_dir, self.filename)

    def before_train(self, runner) -> None:
        self.startup = startup_records(runner.train_dataloader.dataset)
        self.replaced = []
        path = self.path(runner)
        if runner.iter > 0 and osp.isfile(path):  # resumed: the replacements before the checkpoint stay listed
            with open(path) as f:
                previous = [json.loads(line) for line in f if line.strip()]
            self.replaced = [r for r in previous if r.get("when") == "replaced" and r["iteration"] <= runner.iter]
        self._write(runner)
        if self.startup:
            print_log(f"bad samples: {len(self.startup)} left out when the dataset was built (on_bad_sample='skip'); "
                      f"listed in {path}", logger="current", level=logging.WARNING)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        samples = data_batch.get("data_samples") if isinstance(data_batch, dict) else None
        new = [dict(record, when="replaced", iteration=runner.iter + 1, rank=get_rank())
               for record in (samples.get("replaced", ()) if isinstance(samples, dict) else ())]
        if get_world_size() > 1:
            count = torch.tensor([len(new)], dtype=torch.long)
            all_reduce(count)
            if int(count) == 0:
                return
            new = [record for part in all_gather_object(new) for record in part]
        self.replaced.extend(new)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)
        total = len(self.startup) + len(self.replaced)
        summary = (f"bad samples: {total} in all, {len(self.startup)} left out at start-up and {len(self.replaced)} "
                   f"replaced during training (on_bad_sample='skip'); listed in {self.path(runner)}"
                   if total else f"bad samples: none (listed in {self.path(runner)}: empty)")
        print_log(summary, logger="current", level=logging.WARNING if total else logging.INFO)

    def _write(self, runner) -> None:
        if not is_main_process():
            return
        path = self.path(runner)
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            for record in (*self.startup, *self.replaced):
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, path)  # a reader never sees half a file
