"""Benchmark files -> evaluation items (prompt text, image, ground truth), with SPEC 5's prompts.

Formats (``--format``; benchmark names are accepted as aliases):

- ``multiple_choice`` (MMBench, SEED-Bench, MMStar, ScienceQA-img, AI2D): an MMBench-style TSV with columns
  ``index``, ``question``, option columns ``A``, ``B``, ... (empty or ``nan`` when a row has fewer options),
  optional ``hint``, ``answer`` (absent for test splits), ``category``, and ``image`` (base64; a short value equal to
  another row's ``index`` reuses that row's image, as MMBench does) or ``image_path`` (relative to the image
  folder). Prompt: ``[hint\\n]question\\nA. ...\\nB. ...\\n`` + "Answer with the option's letter from the given
  choices directly." With ``circular``, each question is asked once per option count with the options rotated, and
  counts as right only when every rotation is.
- ``vqa`` (TextVQA, DocVQA, GQA, VQAv2): JSONL ``{question_id, image, question (or text), answers}`` where
  ``answers`` is a list of strings or of ``{"answer": ...}`` (or ``answer``: one string); prompt
  ``question\\n`` + "Answer the question using a single word or phrase."
- ``pope``: JSONL ``{question_id, image, question (or text), label (or answer): yes/no, category?}``; ``mme``: the
  same with ``category`` required (two questions per image); prompt ``question\\n`` + "Please answer the question
  with yes or no."
- ``mmvet``, ``llava_wild``: JSONL ``{question_id, image, question (or text)}``, the question as is; answer files
  only (their scores need a GPT judge).
- ``video_qa`` (MSVD-QA, MSRVTT-QA, ActivityNet-QA): open-ended questions about videos; layouts in
  :mod:`mg_llava.inference.video_qa`; prompt ``question\n`` + "Answer the question using a single word or phrase."

Boxes are looked up by the item's ``index``/``question_id`` in a box file (``data_prep/`` writes one from the same
file). A row that cannot be used (missing image, malformed row, answer not among the options) is a
:class:`BadSample`: an error naming it, or under ``on_bad_sample='skip'`` left out and counted.
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from mg_llava.data_files import read_records, read_tsv, reads_file
from mg_llava.dataset import BadSample, BadSampleError

from .eval_items import EvalItem, with_suffix
from .metrics import rotate_options, rotated_answer
from .video_qa import read_video_qa

MC_SUFFIX = "Answer with the option's letter from the given choices directly."
VQA_SUFFIX = "Answer the question using a single word or phrase."
YES_NO_SUFFIX = "Please answer the question with yes or no."

FORMATS = ("multiple_choice", "vqa", "pope", "mme", "mmvet", "llava_wild", "video_qa")
ALIASES = {
    "mmbench": "multiple_choice", "seed": "multiple_choice", "seedbench": "multiple_choice",
    "mmstar": "multiple_choice", "scienceqa": "multiple_choice", "ai2d": "multiple_choice",
    "textvqa": "vqa", "docvqa": "vqa", "gqa": "vqa", "vqav2": "vqa", "llava_bench": "llava_wild",
    "msvd_qa": "video_qa", "msrvtt_qa": "video_qa", "activitynet_qa": "video_qa",
}
DEFAULT_SUFFIX = {"multiple_choice": MC_SUFFIX, "vqa": VQA_SUFFIX, "pope": YES_NO_SUFFIX, "mme": YES_NO_SUFFIX,
                  "mmvet": "", "llava_wild": "", "video_qa": VQA_SUFFIX}
MISSING = ("", "nan", "none", "null")
SHORT_IMAGE_REFERENCE = 64  # an image cell this short cannot be an encoded image: it names another row's index


@dataclass
class Benchmark:
    path: str
    format: str
    items: List[EvalItem]
    bad: List[BadSample]
    total_rows: int


def resolve_format(name: str) -> str:
    fmt = ALIASES.get(name.lower(), name.lower())
    if fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {name!r}; one of {FORMATS} or {sorted(ALIASES)}")
    return fmt


def _missing(value) -> bool:
    return value is None or str(value).strip().lower() in MISSING


@reads_file("benchmark file")
def read_benchmark(path: str, fmt: str, image_folder: Optional[str] = None, circular: bool = False,
                   prompt_suffix: Optional[str] = None, on_bad_sample: str = "raise") -> Benchmark:
    """Read a benchmark file into items; bad rows raise :class:`BadSampleError` or are returned in ``bad``."""
    fmt = resolve_format(fmt)
    if on_bad_sample not in ("raise", "skip"):
        raise ValueError(f"on_bad_sample must be 'raise' or 'skip', got {on_bad_sample!r}")
    if circular and fmt != "multiple_choice":
        raise ValueError("circular evaluation applies to the multiple_choice format only")
    suffix = DEFAULT_SUFFIX[fmt] if prompt_suffix is None else prompt_suffix
    if fmt == "multiple_choice":
        items, bad, total = _read_multiple_choice(path, image_folder, circular, suffix)
    elif fmt == "video_qa":
        items, bad, total = read_video_qa(path, image_folder, suffix)
    else:
        items, bad, total = _read_jsonl(path, fmt, image_folder, suffix)
    if bad and on_bad_sample == "raise":
        raise BadSampleError(bad, total)
    return Benchmark(path, fmt, items, bad, total)


# ---------------------------------------------------------------------------------------------- multiple choice


def _read_multiple_choice(path, image_folder, circular, suffix):
    header, records = read_tsv(path, "benchmark file")
    rows = [(r.number, r.value) for r in records]
    letters = [c for c in header if re.fullmatch(r"[A-Z]", c or "")]
    missing = [c for c in ("index", "question") if c not in header]
    if missing or len(letters) < 2:
        raise ValueError(f"{path}: not an MMBench-style TSV: needs columns index, question and options A, B, ...; "
                         f"header is {header}")
    if "image" not in header and "image_path" not in header:
        raise ValueError(f"{path}: no 'image' (base64) or 'image_path' column")
    images = {row["index"]: row.get("image") for _, row in rows if row.get("index") is not None}

    items, bad = [], []
    for line, row in rows:
        where = f"line {line}"
        index = row.get("index")
        extra, short = row.get(None) or [], [c for c in header if row.get(c) is None]
        if extra or short:
            found = len(header) - len(short) + len(extra)
            bad.append(BadSample(f"malformed row: {found} fields, the header has {len(header)}", index, path, where))
            continue
        if _missing(index) or _missing(row["question"]):
            bad.append(BadSample("malformed row: empty index or question", index, path, where))
            continue
        options = {c: row[c].strip() for c in letters if not _missing(row[c])}
        if len(options) < 2 or list(options) != letters[:len(options)]:
            bad.append(BadSample(f"bad options: {sorted(options)} (need A, B, ... without gaps)", index, path, where))
            continue
        answer = None if _missing(row.get("answer")) else row["answer"].strip()
        if answer is not None and answer not in options:
            bad.append(BadSample(f"unknown answer option: {answer!r} is not one of {list(options)}", index, path,
                                 where))
            continue
        image, image_key, is_path = _tsv_image(row, images, image_folder)
        if image is None:
            bad.append(BadSample("missing image: empty image/image_path cell", index, path, where))
            continue
        if is_path and not osp.isfile(image):
            bad.append(BadSample(f"missing image: {image} does not exist", index, path, where))
            continue
        hint = None if _missing(row.get("hint")) else row["hint"].strip()
        category = None if _missing(row.get("category")) else row["category"]
        letters_here = list(options)
        for shift in range(len(options) if circular else 1):
            shown = rotate_options(options, shift)
            lines = ([hint] if hint else []) + [row["question"].strip()]
            lines += [f"{letter}. {text}" for letter, text in shown.items()]
            target = dict(index=index, round=shift, options=shown, category=category,
                          answer=None if answer is None else rotated_answer(answer, letters_here, shift))
            items.append(EvalItem(id=f"{index}@{shift}" if circular else str(index), key=str(index),
                                  question=with_suffix("\n".join(lines), suffix), image=image, target=target,
                                  image_key=image_key, encoded=not is_path))
    return items, bad, len(rows)


def _tsv_image(row, images, image_folder):
    """(path or base64 text, box-file id of the image's row when it is a reference, is_path) of a row."""
    if "image_path" in row and not _missing(row.get("image_path")):
        path = row["image_path"]
        return (osp.join(image_folder, path) if image_folder else path), None, True
    value = row.get("image")
    if _missing(value):
        return None, None, False
    value = value.strip()
    if len(value) < SHORT_IMAGE_REFERENCE and value in images and value != row["index"]:
        referenced = images[value]
        return (None, None, False) if _missing(referenced) else (referenced.strip(), value, False)
    return value, None, False


# ---------------------------------------------------------------------------------------------- JSONL formats


def _answers(record) -> Optional[List[str]]:
    answers = record.get("answers", record.get("answer"))
    if answers is None:
        return None
    if isinstance(answers, str):
        return [answers]
    return [a["answer"] if isinstance(a, dict) else str(a) for a in answers]


def _read_jsonl(path, fmt, image_folder, suffix):
    items, bad = [], []
    seen = set()
    rows = read_records(path, "benchmark file", fmt=".jsonl")
    for row in rows:
        where, record = row.where, row.value
        if row.error is not None:
            bad.append(BadSample(f"malformed row: invalid JSON ({row.error})", None, path, where))
            continue
        if not isinstance(record, dict) or record.get("question_id") is None:
            bad.append(BadSample("malformed row: no question_id", None, path, where))
            continue
        qid = str(record["question_id"])
        question = record.get("question", record.get("text"))
        reason = None
        if qid in seen:
            reason = "duplicate question_id"
        elif not isinstance(question, str) or not question.strip():
            reason = "malformed row: no question (or text)"
        elif _missing(record.get("image")):
            reason = "missing image: no 'image' field"
        image = None if reason else (osp.join(image_folder, record["image"]) if image_folder else record["image"])
        if reason is None and not osp.isfile(image):
            reason = f"missing image: {image} does not exist"
        target = dict(question_id=record["question_id"], question=question)
        if reason is None and fmt in ("pope", "mme"):
            label = record.get("label", record.get("answer"))
            if str(label).strip().lower() not in ("yes", "no"):
                reason = f"unknown answer option: label {label!r} is not yes/no"
            elif fmt == "mme" and _missing(record.get("category")):
                reason = "malformed row: MME needs a category"
            else:
                target.update(label=str(label).strip().lower(), category=record.get("category"),
                              image=record["image"])
        elif reason is None and fmt == "vqa":
            target["answers"] = _answers(record)
        if reason is not None:
            bad.append(BadSample(reason, qid, path, where))
            continue
        seen.add(qid)
        items.append(EvalItem(id=qid, key=qid, question=with_suffix(question.strip(), suffix), image=image,
                              target=target))
    return items, bad, len(rows)


def bad_sample_counts(bad: List[BadSample]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for sample in bad:
        reason = sample.reason.split(":")[0]
        counts[reason] = counts.get(reason, 0) + 1
    return counts
