"""The task's functions: images from the working directory, the question as tools/evaluate.py asks it (the task's
``post_prompt`` on a new line, as ``--prompt-suffix``), and lmms-eval's TextVQA accuracy."""
import os

from lmms_eval.tasks.textvqa.utils import textvqa_process_results
from PIL import Image


def doc_to_visual(doc):
    with Image.open(os.path.abspath(doc["image"])) as image:
        return [image.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    suffix = (lmms_eval_specific_kwargs or {}).get("post_prompt", "")
    question = doc["question"].strip()
    return f"{question}\n{suffix}" if suffix else question


def process_results(doc, results):
    return {"exact_match": textvqa_process_results(doc, results)["exact_match"]}
