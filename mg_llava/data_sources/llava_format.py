"""What every converter shares: the placeholder rule, unique string ids, the final check and the report."""
import json
import os
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..dataset.conversations import check_sample

ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


@dataclass
class ConversionReport:
    """Counts of one conversion: samples read and written, changes made (by kind) and samples left out (by reason,
    with the first few ids)."""

    source: str
    read: int = 0
    written: int = 0
    changed: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: Dict[str, List[str]] = field(default_factory=dict)

    def drop(self, reason: str, sample_id) -> None:
        kind = reason.split(":")[0]
        self.dropped[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(str(sample_id))

    def summary(self) -> str:
        lines = [f"{self.source}: read {self.read}, wrote {self.written}, left out {sum(self.dropped.values())}"]
        lines += [f"  changed: {count} x {kind}" for kind, count in sorted(self.changed.items())]
        lines += [f"  left out: {count} x {kind} (e.g. ids {self.examples[kind]})"
                  for kind, count in sorted(self.dropped.items())]
        return "\n".join(lines)


def normalise_placeholder(conversations: List[dict], token: Optional[str], report: ConversionReport) -> List[dict]:
    """Roles as LLaVA's (human/gpt) and ``token`` (``<image>``/``<video>``, or None for text) exactly once, at the
    start of the first question, as LLaVA's own files write it; every other occurrence in the questions is removed.
    Each change is counted in ``report``."""
    turns = []
    for turn in conversations:
        role = ROLES.get(turn.get("from"), turn.get("from")) if isinstance(turn, dict) else None
        if isinstance(turn, dict) and role != turn.get("from"):
            report.changed[f"role {turn.get('from')!r} -> {role!r}"] += 1
        turns.append(dict(turn, **{"from": role}) if isinstance(turn, dict) else turn)
    if token is None or not turns or not isinstance(turns[0], dict) or turns[0].get("from") != "human" \
            or not isinstance(turns[0].get("value"), str):
        return turns  # not a conversation to fix: the dataset's check names what is wrong
    questions = [i for i, turn in enumerate(turns) if turn.get("from") == "human" and isinstance(turn.get("value"), str)]
    found = sum(turns[i]["value"].count(token) for i in questions)
    first = turns[0]["value"]
    if found == 1 and (first == token or first.startswith(token + "\n")):
        return turns
    report.changed[f"{token} moved to the start of the first question" if found else f"{token} added"] += 1
    for i in questions:
        turns[i] = dict(turns[i], value="\n".join(part.strip() for part in turns[i]["value"].split(token)
                                                   if part.strip()))
    turns[0] = dict(turns[0], value=f"{token}\n{turns[0]['value']}" if turns[0]["value"] else token)
    return turns


class UniqueIds:
    """String ids, unique over a conversion: a repeated id gets ``_<n>`` (counted in the report)."""

    def __init__(self, report: ConversionReport):
        self.report, self.seen = report, Counter()

    def __call__(self, sample_id) -> str:
        sample_id = str(sample_id)
        self.seen[sample_id] += 1
        if self.seen[sample_id] == 1:
            return sample_id
        self.report.changed["repeated id made unique (_<n>)"] += 1
        return f"{sample_id}_{self.seen[sample_id] - 1}"


def finish(sample: dict, report: ConversionReport, out: List[dict]) -> None:
    """Append ``sample`` if the dataset's own check accepts it, else count it as left out with the check's reason."""
    reason = check_sample(sample)
    if reason is not None:
        report.drop(reason, sample.get("id"))
        return
    out.append(sample)
    report.written += 1


def write_llava(samples: List[dict], path: str, report=None) -> None:
    """A LLaVA JSON list, written through a temporary file (a killed run leaves no half file); with a conversion
    ``report``, its summary and the file written are printed."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(samples, f, ensure_ascii=False)
    os.replace(path + ".tmp", path)
    if report is not None:
        print(report.summary())
        print(f"wrote {path}")
