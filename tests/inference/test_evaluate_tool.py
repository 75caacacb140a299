"""tools/evaluate.py with the trained tiny model: batching with left padding changes nothing, and the answer the
model learned in training scores as right (the yes/no formats run with scripted answers in test_evaluate.py)."""
import json
import os.path as osp

import pytest

from inference_helpers import MEMORISED
from eval_helpers import (MC_HEADER, MC_ROWS, b64_image, boxes_for, check_answers_depend_on_the_image, image_folder,
                          write_jsonl, write_mc_tsv, write_tsv)
from tool_helpers import load_tool


@pytest.fixture(scope="module")
def evaluate():
    return load_tool("evaluate").main


def test_batched_equals_one_by_one(evaluate, model_paths, trained_checkpoint, tiny_data, tmp_path):
    folder = image_folder(tmp_path)
    name, question, answer = MEMORISED
    files = {
        "mmbench": (mc_tsv(tmp_path / "mc.tsv"), [row[0] for row in MC_ITEMS]),
        "vqa": (write_jsonl(tmp_path / "vqa.jsonl", vqa_items()), ["q1", "q2", "q3"]),
    }
    for fmt, (path, ids) in files.items():
        boxes = boxes_for(ids, tmp_path, f"{fmt}_boxes.json")
        common = ["--checkpoint", trained_checkpoint, *model_paths, "--benchmark", path, "--format", fmt,
                  "--image-folder", folder, "--boxes", boxes, "--max-new-tokens", "6", "--num-workers", "0",
                  "--no-progress"]
        if fmt == "vqa":  # the training prompt had no instruction suffix
            common += ["--prompt-suffix", ""]
        batched = evaluate(common + ["--out-dir", str(tmp_path / f"{fmt}_b3"), "--batch-size", "3"])
        single = evaluate(common + ["--out-dir", str(tmp_path / f"{fmt}_b1"), "--batch-size", "1"])
        assert batched["metrics"] == single["metrics"] and batched["num_items"] == len(ids)
        predictions = {}
        for out in ("b3", "b1"):
            with open(osp.join(tmp_path / f"{fmt}_{out}", "predictions.shard0of1.jsonl")) as f:
                predictions[out] = {r["id"]: r["prediction"] for r in map(json.loads, f)}
        assert predictions["b3"] == predictions["b1"]
        assert all(predictions["b1"].values()), predictions["b1"]  # the model wrote something for every item
        if fmt == "mmbench":
            # on these very items the chosen options depend on the photo (a constant answer fails: the test below)
            check_answers_depend_on_the_image(
                lambda photos: mc_answers(evaluate, common, tmp_path, photos, predictions["b1"]),
                [row[-1] for row in MC_ITEMS], mc_right)
        if fmt == "vqa":
            assert predictions["b1"]["q1"] == answer  # the learned answer, through the evaluation path
            assert batched["metrics"]["accuracy"] >= 100.0 / 3
            # on these very items the answers depend on the photo (a constant answer meets the bound above)
            check_answers_depend_on_the_image(
                lambda photos: vqa_answers(evaluate, common, tmp_path, photos, predictions["b1"]),
                [item["image"] for item in vqa_items()], lambda i, text: text in vqa_items()[i]["answers"])


def vqa_items(photos=None):
    """The VQA items of the test, each about its own photo or ``photos[i]``."""
    name, question, answer = MEMORISED
    items = [
        {"question_id": "q1", "image": f"{name}.jpg", "question": question, "answers": [answer] * 10},
        {"question_id": "q2", "image": "coffee.jpg", "question": "What drink?", "answers": ["coffee"] * 10},
        {"question_id": "q3", "image": "rocket.jpg", "question": "What is it?", "answers": ["rocket"] * 10}]
    return items if photos is None else [dict(item, image=photo) for item, photo in zip(items, photos)]


def vqa_answers(evaluate, common, tmp_path, photos, own):
    """tools/evaluate.py's answers to the VQA items asked about ``photos`` (``own``: the answers about their own)."""
    if list(photos) == [item["image"] for item in vqa_items()]:
        return [own[item["question_id"]] for item in vqa_items()]
    index = common.index("--benchmark") + 1
    options = list(common)
    options[index] = write_jsonl(tmp_path / "vqa_swapped.jsonl", vqa_items(photos))
    evaluate(options + ["--out-dir", str(tmp_path / "vqa_swapped"), "--batch-size", "3"])
    with open(osp.join(tmp_path / "vqa_swapped", "predictions.shard0of1.jsonl")) as f:
        by_id = {r["id"]: r["prediction"] for r in map(json.loads, f)}
    return [by_id[item["question_id"]] for item in vqa_items()]


# write_mc_tsv's questions and two yes/no ones (the tiny model learned one answer, and picks no right option of the
# others: 0 % on those four alone, a score that a constant answer meets too)
MC_ITEMS = MC_ROWS + [["14", "Is it a dog?", "", "yes", "no", "", "", "B", "animals", "chelsea"],
                      ["15", "Is it a rocket?", "", "yes", "no", "", "", "A", "objects", "rocket"]]


def mc_tsv(path, photos=None):
    """The multiple-choice items of the test, each about its own photo or ``photos[i]``."""
    photos = photos or [row[-1] for row in MC_ITEMS]
    return write_tsv(path, MC_HEADER, [row[:-1] + [b64_image(photo)] for row, photo in zip(MC_ITEMS, photos)])


def mc_right(i, text):
    """Whether ``text`` names the right option of MC_ITEMS[i] (as tools/evaluate.py scores it)."""
    from mg_llava.inference.metrics import extract_option

    row = MC_ITEMS[i]
    options = {letter: option for letter, option in zip("ABCD", row[3:7]) if option}
    return extract_option(text, options) == row[7]


def mc_answers(evaluate, common, tmp_path, photos, own):
    """tools/evaluate.py's answers to the multiple-choice items asked about ``photos`` (``own``: about their own)."""
    if list(photos) == [row[-1] for row in MC_ITEMS]:
        return [own[row[0]] for row in MC_ITEMS]
    options = list(common)
    options[options.index("--benchmark") + 1] = mc_tsv(tmp_path / "mc_swapped.tsv", photos)
    evaluate(options + ["--out-dir", str(tmp_path / "mc_swapped"), "--batch-size", "3"])
    with open(osp.join(tmp_path / "mc_swapped", "predictions.shard0of1.jsonl")) as f:
        by_id = {r["id"]: r["prediction"] for r in map(json.loads, f)}
    return [by_id[row[0]] for row in MC_ITEMS]


def test_a_constant_answer_model_fails_the_multiple_choice_check():
    """The multiple-choice check rejects one answer for every item ("B" is right on four of the six) and a model
    that picks from the question alone."""
    photos = [row[-1] for row in MC_ITEMS]
    for model in (lambda photos: ["B"] * 6, lambda photos: ["B", "B", "A", "A", "no", "no"]):
        with pytest.raises(AssertionError):
            check_answers_depend_on_the_image(model, photos, mc_right)


def test_a_constant_answer_model_fails_the_image_check():
    """What the check above rejects: one answer for every item (it meets accuracy >= 100 / 3 when it is q1's), and a
    model that answers each question without looking at the photo."""
    photos = [item["image"] for item in vqa_items()]
    right = lambda i, text: text in vqa_items()[i]["answers"]  # noqa: E731
    for model in (lambda photos: [MEMORISED[2]] * 3, lambda photos: [MEMORISED[2], "coffee", "a plane"]):
        with pytest.raises(AssertionError):
            check_answers_depend_on_the_image(model, photos, right)


def test_boxes_are_required_or_explicitly_off(evaluate, model_paths, trained_checkpoint, tmp_path):
    path = write_mc_tsv(tmp_path / "mc.tsv")
    with pytest.raises(SystemExit, match="give --boxes .* or --no-boxes"):
        evaluate(["--checkpoint", trained_checkpoint, *model_paths, "--benchmark", path, "--format", "mmbench",
                  "--out-dir", str(tmp_path / "out")])
