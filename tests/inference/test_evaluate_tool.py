"""tools/evaluate.py with the trained tiny model: batching with left padding changes nothing, and the answer the
model learned in training scores as right (the yes/no formats run with scripted answers in test_evaluate.py)."""
import json
import os.path as osp

import pytest

from inference_helpers import MEMORISED
from eval_helpers import boxes_for, image_folder, write_jsonl, write_mc_tsv
from tool_helpers import load_tool


@pytest.fixture(scope="module")
def evaluate():
    return load_tool("evaluate").main


def test_batched_equals_one_by_one(evaluate, model_paths, trained_checkpoint, tiny_data, tmp_path):
    folder = image_folder(tmp_path)
    name, question, answer = MEMORISED
    files = {
        "mmbench": (write_mc_tsv(tmp_path / "mc.tsv"), ["10", "11", "12", "13"]),
        "vqa": (write_jsonl(tmp_path / "vqa.jsonl", [
            {"question_id": "q1", "image": f"{name}.jpg", "question": question, "answers": [answer] * 10},
            {"question_id": "q2", "image": "coffee.jpg", "question": "What drink?", "answers": ["coffee"] * 10},
            {"question_id": "q3", "image": "rocket.jpg", "question": "What is it?", "answers": ["rocket"] * 10}]),
            ["q1", "q2", "q3"]),
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
        if fmt == "vqa":
            assert predictions["b1"]["q1"] == answer  # the learned answer, through the evaluation path
            assert batched["metrics"]["accuracy"] >= 100.0 / 3


def test_boxes_are_required_or_explicitly_off(evaluate, model_paths, trained_checkpoint, tmp_path):
    path = write_mc_tsv(tmp_path / "mc.tsv")
    with pytest.raises(SystemExit, match="give --boxes .* or --no-boxes"):
        evaluate(["--checkpoint", trained_checkpoint, *model_paths, "--benchmark", path, "--format", "mmbench",
                  "--out-dir", str(tmp_path / "out")])
