"""Open-ended video QA (MSVD-QA, MSRVTT-QA, ActivityNet-QA): reading the files, offline accuracy, answer files.

Layouts read (``--format video_qa``, aliases ``msvd_qa``, ``msrvtt_qa``, ``activitynet_qa``):

- one JSON list or JSONL file of ``{question_id (or id), video (or video_name / video_id), question, answer}``;
- the split layout of Video-ChatGPT's / Video-LLaVA's evaluation files: ``<name>_q.json`` (``{video_name,
  question_id, question}``) with ``<name>_a.json`` beside it (``{question_id, answer, type?}``), joined by
  question_id.

A video is ``<video folder>/<name>``, else that name with one of ``VIDEO_EXTENSIONS`` (MSVD/MSRVTT list names
without extension), a file or a frames folder. The question is asked as is, plus the short-answer instruction of
SPEC 5 unless ``--prompt-suffix`` says otherwise.

Scores computed offline: exact match (case and surrounding space ignored) and normalised match (the VQA answer
normalisation: punctuation, articles, number words), overall and per question ``type`` when the files give one.
The GPT-assisted scores of the papers (accuracy and a 0-5 score judged by GPT-3.5) need the answer file this
writes, ``video_qa_answers.jsonl``: one ``{"id", "question", "answer", "pred"}`` per line, the format the
Video-ChatGPT / Video-LLaVA judging scripts read.
"""
import json
import os.path as osp
from typing import Dict, Iterable, List, Optional, Tuple

from mg_llava.data_files import read_records
from mg_llava.dataset import BadSample

from .eval_items import EvalItem, with_suffix
from .metrics import normalize_vqa_answer

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".gif")
ANSWER_FILE = "video_qa_answers.jsonl"


def find_video(name: str, video_folder: Optional[str]) -> Optional[str]:
    """The video file or frames folder called ``name`` (with or without extension) under ``video_folder``."""
    base = osp.join(video_folder, name) if video_folder else name
    for candidate in (base, *(base + ext for ext in VIDEO_EXTENSIONS)):
        if osp.exists(candidate):
            return candidate
    return None


def _load_rows(path: str) -> List[Tuple[str, object]]:
    """(where, row) for each row of a JSONL file or (any other name) a JSON list; a malformed JSONL line is
    (where, None)."""
    fmt = ".jsonl" if path.endswith(".jsonl") else ".json"
    return [(r.where, r.value) for r in read_records(path, "video QA file", fmt=fmt)]


def _answers_beside(path: str) -> Optional[Dict[str, dict]]:
    """The ``<name>_a.json`` rows by question_id when ``path`` is a ``<name>_q.json``; else None."""
    stem, ext = osp.splitext(path)
    if not stem.endswith("_q") or not osp.isfile(stem[:-2] + "_a" + ext):
        return None
    rows = _load_rows(stem[:-2] + "_a" + ext)
    return {str(row.get("question_id")): row for _, row in rows if isinstance(row, dict)}


def read_video_qa(path: str, video_folder: Optional[str], suffix: str):
    """Items of a video QA file: ``(items, bad, total)`` as the other benchmark readers return them."""
    answers = _answers_beside(path)
    items, bad, seen = [], [], set()
    rows = _load_rows(path)
    for where, row in rows:
        if not isinstance(row, dict):
            bad.append(BadSample("malformed row: not a JSON object", None, path, where))
            continue
        qid = row.get("question_id", row.get("id"))
        if qid is None:
            bad.append(BadSample("malformed row: no question_id (or id)", None, path, where))
            continue
        qid = str(qid)
        if answers is not None:
            row = {**answers.get(qid, {}), **row}
        name = row.get("video", row.get("video_name", row.get("video_id")))
        question, answer = row.get("question"), row.get("answer")
        reason, video = None, None
        if qid in seen:
            reason = "duplicate question_id"
        elif not isinstance(question, str) or not question.strip():
            reason = "malformed row: no question"
        elif name is None or not str(name).strip():
            reason = "missing video: no 'video' (or video_name / video_id) field"
        else:
            video = find_video(str(name), video_folder)
            if video is None:
                reason = f"missing video: {osp.join(video_folder or '', str(name))}[{'|'.join(VIDEO_EXTENSIONS)}] " \
                         f"does not exist"
        if reason is not None:
            bad.append(BadSample(reason, qid, path, where))
            continue
        seen.add(qid)
        target = dict(question_id=row.get("question_id", row.get("id")), question=question, video=str(name),
                      answer=None if answer is None else str(answer), type=row.get("type"))
        items.append(EvalItem(id=qid, key=qid, question=with_suffix(question.strip(), suffix), image=video,
                              target=target, image_key=str(name), video=True))
    return items, bad, len(rows)


def video_qa_metrics(records: Iterable[dict]) -> dict:
    """Exact and normalised match (in %) of ``prediction`` against ``answer``, overall and per ``type``."""
    scored = [r for r in records if r.get("answer") is not None]
    if not scored:
        return dict(num_scored=0)

    def scores(rows):
        exact = sum(r["prediction"].strip().lower() == r["answer"].strip().lower() for r in rows)
        normalised = sum(normalize_vqa_answer(r["prediction"]) == normalize_vqa_answer(r["answer"]) for r in rows)
        return dict(exact_match=100.0 * exact / len(rows), normalized_match=100.0 * normalised / len(rows),
                    num_scored=len(rows))

    result = scores(scored)
    types = sorted({str(r["type"]) for r in scored if r.get("type") is not None})
    if types:
        result["per_type"] = {t: scores([r for r in scored if str(r.get("type")) == t]) for t in types}
    return result


def write_video_qa_answers(records: Iterable[dict], out_dir: str) -> List[str]:
    """The GPT-judge input: ``{"id", "question", "answer", "pred"}`` per line (answered records only)."""
    path = osp.join(out_dir, ANSWER_FILE)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            if "skipped" not in r:
                f.write(json.dumps(dict(id=r["question_id"], question=r["question"], answer=r.get("answer"),
                                        pred=r["prediction"]), ensure_ascii=False) + "\n")
    return [path]
