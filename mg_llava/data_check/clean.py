"""``--write-clean``: each LLaVA file of the config without the samples the check found bad, and each box file
without the entries no kept sample uses, so that the written set passes the same check."""
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Sequence, Set, Tuple

from ..data_files import read_json_list, read_records
from ..dataset.box_table import FRAME_SEPARATOR
from .problems import Problem
from .text import SourceText


def samples_to_drop(problems: Iterable[Problem], accepted: Iterable[str]) -> Set[Tuple[int, str]]:
    """(source, where) of the samples the clean files leave out: those training would drop, and those with any
    finding not accepted (a truncated sample stays only with ``--accept truncated``)."""
    accepted = set(accepted)
    return {(p.source, p.where) for p in problems
            if p.kind != "orphan_box_entry" and (p.drops_sample or p.kind not in accepted)}


def write_clean(sources: Sequence[SourceText], drop: Set[Tuple[int, str]], out_dir: str) -> Dict[str, List[str]]:
    """Write the clean files under ``out_dir`` (named as the originals; a name used twice gets its dataset's index
    as prefix). Returns {"data": [paths per dataset], "boxes": [paths per dataset, or None]}."""
    os.makedirs(out_dir, exist_ok=True)
    names = [osp.basename(source.data_path) for source in sources]
    data_paths, keys_by_box_file = [], {}
    for source, name in zip(sources, names):
        if names.count(name) > 1:
            name = f"{source.index}_{name}"
        kept = [record for record in read_records(source.data_path, "LLaVA annotation file")
                if record.error is None and (source.index, record.where) not in drop]
        path = osp.join(out_dir, name)
        _write_records(path, [record.value for record in kept])
        data_paths.append(path)
        if source.box_file is not None:
            keys = keys_by_box_file.setdefault(source.box_file, set())
            for record in kept:
                keys.add(str(record.value.get("id")))
                if record.value.get("video") is not None:
                    keys.add(str(record.value["video"]))
    box_paths = {}
    for box_file, keys in keys_by_box_file.items():
        name = osp.basename(box_file)
        if name in names or name in [osp.basename(p) for p in box_paths.values()]:
            name = f"boxes_{len(box_paths)}_{name}"
        entries = [entry for entry in read_json_list(box_file, "box file") if _entry_key(entry) in keys]
        box_paths[box_file] = osp.join(out_dir, name)
        with open(box_paths[box_file], "w") as f:
            json.dump(entries, f)
    return dict(data=data_paths, boxes=[box_paths.get(source.box_file) for source in sources])


def _entry_key(entry) -> str:
    key = entry.get("id", entry.get("video")) if isinstance(entry, dict) else None
    return str(key).split(FRAME_SEPARATOR)[0]


def _write_records(path: str, items: list) -> None:
    with open(path, "w") as f:
        if path.endswith(".jsonl"):
            f.writelines(json.dumps(item) + "\n" for item in items)
        else:
            json.dump(items, f)
