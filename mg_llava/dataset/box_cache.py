"""The box-file cache: a checked :class:`~.box_table.BoxTable` kept as ``.npy`` arrays, memory-mapped on later reads.

Parsing a released 1M-entry JSON takes minutes and gigabytes on every rank; the cache is read in about a second and
its pages are shared by every process on the machine. The cache is keyed by the file's path, size and mtime.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Callable

import numpy as np
from mmengine.logging import print_log

from .box_table import BoxTable

_CACHE_ARRAYS = ("offsets", "boxes", "scores", "label_ids")


def _cache_key(path: str, strict: bool) -> str:
    stat = os.stat(path)
    ident = f"{osp.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|strict={strict}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def load_cached(path: str, strict: bool, cache_dir: str, parse: Callable[[str, bool], BoxTable]) -> BoxTable:
    """The table of box file ``path`` from ``cache_dir``, made there first with ``parse(path, strict)``."""
    folder = osp.join(cache_dir, _cache_key(path, strict))
    if not osp.isfile(osp.join(folder, "meta.json")):
        table = parse(path, strict)
        # Written beside the final folder, then renamed: readers never see a half-written cache, and when several
        # ranks race, the first rename wins and the others drop their copy.
        tmp = f"{folder}.tmp-{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        for name in _CACHE_ARRAYS:
            np.save(osp.join(tmp, f"{name}.npy"), getattr(table, name))
        with open(osp.join(tmp, "meta.json"), "w") as f:
            json.dump(dict(source=osp.abspath(path), ids=table.ids, label_names=table.label_names, bad=table.bad), f)
        try:
            os.rename(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print_log(f"box file {path}: cached as arrays in {folder}", logger="current")
    with open(osp.join(folder, "meta.json")) as f:
        meta = json.load(f)
    arrays = {name: np.load(osp.join(folder, f"{name}.npy"), mmap_mode="r") for name in _CACHE_ARRAYS}
    return BoxTable(path, meta["ids"], label_names=meta["label_names"], bad=meta["bad"], **arrays)
