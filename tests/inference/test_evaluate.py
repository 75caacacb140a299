"""Batch evaluation end to end: metrics from scripted answers match hand-computed values in every format; sharding,
resuming and bad samples. The real tiny model runs through tools/evaluate.py in test_tools.py."""
import json
import os
import os.path as osp

import pytest

from eval_helpers import image_folder, write_jsonl, write_mc_tsv

from mg_llava.dataset import BadSampleError
from mg_llava.inference.benchmarks import read_benchmark
from mg_llava.inference.evaluate import read_records, run_evaluation


def scripted(answers):
    """prepare/answer stand-ins for the model: each item answers ``answers[item.id]``; records every call."""
    calls = []

    def prepare(item):
        return item

    def answer(items):
        calls.append([i.id for i in items])
        return [answers[i.id] for i in items]

    return prepare, answer, calls


def run(bench, out_dir, answers, **kwargs):
    prepare, answer, calls = scripted(answers)
    kwargs.setdefault("batch_size", 2)
    return run_evaluation(bench, str(out_dir), prepare, answer, progress=False, **kwargs), calls


def test_multiple_choice_circular_by_hand(tmp_path):
    bench = read_benchmark(write_mc_tsv(tmp_path / "mc.tsv"), "mmbench", circular=True)
    answers = {}
    for item in bench.items:  # right everywhere except question 11's round 2 and question 13's round 1
        answers[item.id] = item.target["answer"]
    answers["11@2"] = "A"
    # round 1 of question 13 shows "A. a plane, B. a rocket": naming the text of B is answering B, which is right
    answers["13@1"] = "I think it is a rocket"
    result, _ = run(bench, tmp_path / "out", answers)  # only question 11 fails: 3 of 4
    assert result["metrics"]["accuracy"] == 75.0
    assert result["metrics"]["per_category"] == {"animals": 100.0, "objects": 50.0}
    assert result["metrics"]["num_predictions"] == 11 and result["metrics"]["unparsed"] == 0
    with open(osp.join(tmp_path / "out", "metrics.json")) as f:
        assert json.load(f) == result


def test_vqa_pope_mme_and_answer_files_by_hand(tmp_path):
    folder = image_folder(tmp_path)
    vqa = write_jsonl(tmp_path / "vqa.jsonl", [
        {"question_id": 1, "image": "chelsea.jpg", "question": "Animal?", "answers": ["cat"] * 3 + ["dog"] * 7},
        {"question_id": 2, "image": "coffee.jpg", "question": "Drink?", "answers": ["coffee"] * 10}])
    result, _ = run(read_benchmark(vqa, "vqa", image_folder=folder), tmp_path / "vqa", {"1": "Cat.", "2": "tea"})
    # "Cat." -> "cat", said by 3 humans: (3 * min(1, 2/3) + 7 * 1) / 10 = 0.9; question 2: 0 -> mean 45 %
    assert result["metrics"]["accuracy"] == pytest.approx(45.0)

    pope = write_jsonl(tmp_path / "pope.jsonl", [
        {"question_id": i, "image": "chelsea.jpg", "text": "Is there a cat?", "label": label,
         "category": "random" if i < 3 else "adversarial"}
        for i, label in enumerate(["yes", "yes", "no", "no"])])
    result, _ = run(read_benchmark(pope, "pope", image_folder=folder), tmp_path / "pope",
                    {"0": "Yes", "1": "No", "2": "Yes, it is.", "3": "No"})
    metrics = result["metrics"]  # TP 1, FN 1, FP 1, TN 1
    assert (metrics["accuracy"], metrics["precision"], metrics["recall"], metrics["f1"], metrics["yes_ratio"]) == \
        (50.0, 50.0, 50.0, 50.0, 50.0)
    assert metrics["per_category"]["adversarial"]["accuracy"] == 100.0

    mme = write_jsonl(tmp_path / "mme.jsonl", [
        {"question_id": i, "image": image, "question": "Q?", "answer": label, "category": "color"}
        for i, (image, label) in enumerate([("chelsea.jpg", "Yes"), ("chelsea.jpg", "No"), ("coffee.jpg", "Yes"),
                                            ("coffee.jpg", "No")])])
    result, _ = run(read_benchmark(mme, "mme", image_folder=folder), tmp_path / "mme",
                    {"0": "Yes", "1": "No", "2": "Yes", "3": "Yes"})
    assert result["metrics"]["categories"]["color"]["score"] == 75.0 + 50.0
    assert result["metrics"]["perception"] == 125.0

    open_ended = write_jsonl(tmp_path / "mmvet.jsonl", [
        {"question_id": "v1", "image": "rocket.jpg", "question": "Describe it."}])
    result, _ = run(read_benchmark(open_ended, "mmvet", image_folder=folder), tmp_path / "mmvet",
                    {"v1": "A rocket."})
    assert result["metrics"] == {}
    with open(result["answer_files"][0]) as f:
        assert json.load(f) == {"v1": "A rocket."}
    result, _ = run(read_benchmark(open_ended, "llava_wild", image_folder=folder), tmp_path / "wild",
                    {"v1": "A rocket."})
    with open(result["answer_files"][0]) as f:
        line = json.loads(f.readline())
    assert (line["question_id"], line["prompt"], line["text"]) == ("v1", "Describe it.", "A rocket.")


def test_shards_then_metrics_and_resume_after_a_kill(tmp_path, monkeypatch):
    bench = read_benchmark(write_mc_tsv(tmp_path / "mc.tsv"), "mmbench")
    answers = {item.id: item.target["answer"] for item in bench.items}
    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result, calls = run(bench, out, answers, batch_size=1)
    assert result is None and calls == [["11"], ["13"]]  # shard 1 of 2 (from torchrun's env): items 1 and 3

    prepare, answer, calls = scripted(answers)

    def dies_after_one_batch(items):
        if calls:
            raise KeyboardInterrupt
        return answer(items)

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(bench, str(out), prepare, dies_after_one_batch, batch_size=1, shard=0, num_shards=2,
                       progress=False)
    with open(osp.join(out, "predictions.shard0of2.jsonl"), "a") as f:
        f.write('{"id": "12", "predic')  # a line cut off by the kill
    result, calls = run(bench, out, answers, batch_size=1, shard=0, num_shards=2)
    assert calls == [["12"]]  # 10 was done before the kill; 12 is predicted again
    assert result["metrics"]["accuracy"] == 100.0 and result["num_items"] == 4
    assert sorted(read_records(str(out))) == ["10", "11", "12", "13"]


def test_a_changed_run_cannot_resume_in_the_same_folder(tmp_path):
    path = write_mc_tsv(tmp_path / "mc.tsv")
    bench = read_benchmark(path, "mmbench")
    answers = {item.id: "A" for item in bench.items}
    run(bench, tmp_path / "out", answers, settings=dict(circular=False))
    with pytest.raises(ValueError, match="different run .*circular"):
        run(bench, tmp_path / "out", answers, settings=dict(circular=True))


def test_unreadable_image_is_named_or_counted(tmp_path, loaded):
    from mg_llava.inference.evaluate import ModelAnswerer

    bench = read_benchmark(write_mc_tsv(tmp_path / "mc.tsv"), "mmbench")
    bench.items[1].image = "%%%not base64%%%"
    answerer = ModelAnswerer(loaded, source="mc.tsv")
    answers = {item.id: item.target["answer"] for item in bench.items}
    _, answer, _ = scripted(answers)

    def answer_samples(samples):
        return [answers[s["id"]] for s in samples]

    with pytest.raises(BadSampleError, match="id '11'.*unreadable image: mc.tsv id '11': the image cell is not valid"):
        run_evaluation(bench, str(tmp_path / "raise"), answerer.prepare, answer_samples, batch_size=2,
                       progress=False)
    result = run_evaluation(bench, str(tmp_path / "skip"), answerer.prepare, answer_samples, batch_size=2,
                            on_bad_sample="skip", progress=False)
    assert result["samples_skipped"] == {"unreadable image": 1}
    assert result["metrics"]["num_questions"] == 3 and result["metrics"]["accuracy"] == 100.0
    assert os.path.isfile(osp.join(tmp_path / "skip", "metrics.json"))


def test_metrics_only_recomputes_from_the_predictions(tmp_path):
    from tool_helpers import load_tool

    from mg_llava.inference.evaluate import resolve_shard

    path = write_mc_tsv(tmp_path / "mc.tsv")
    bench = read_benchmark(path, "mmbench")
    evaluate = load_tool("evaluate").main
    args = ["--benchmark", path, "--format", "mmbench", "--out-dir", str(tmp_path / "out"), "--metrics-only"]
    with pytest.raises(SystemExit, match="not every item has a prediction yet"):
        evaluate(args)
    first, _ = run(bench, tmp_path / "out", {"10": "B", "11": "A", "12": "B", "13": "A"})
    assert first["metrics"]["accuracy"] == 75.0
    os.remove(osp.join(tmp_path / "out", "metrics.json"))
    assert evaluate(args) == first
    with pytest.raises(ValueError, match="need 0 <= shard < num_shards, got shard=2, num_shards=2"):
        resolve_shard(2, 2)
