"""Benchmark files -> items: SPEC 5's prompts, circular rounds, image references, and every bad row named."""
import pytest

from eval_helpers import MC_HEADER, b64_image, image_folder, write_jsonl, write_mc_tsv, write_tsv

from mg_llava.dataset import BadSampleError
from mg_llava.inference.benchmarks import read_benchmark


def test_multiple_choice_prompt_and_items(tmp_path):
    bench = read_benchmark(write_mc_tsv(tmp_path / "mc.tsv"), "mmbench")
    assert [i.id for i in bench.items] == ["10", "11", "12", "13"]
    first = bench.items[0]
    assert first.question == ("Look closely.\nWhat animal is it?\nA. a dog\nB. a cat\nC. a bird\nD. a fish\n"
                              "Answer with the option's letter from the given choices directly.")
    assert first.encoded and first.target["answer"] == "B" and first.target["category"] == "animals"
    assert bench.items[1].question.startswith("What is in the cup?\nA. tea\nB. coffee\nC. milk\nAnswer")  # no hint
    reused = bench.items[2]
    assert reused.image == first.image and reused.image_key == "10" and reused.key == "12"


def test_circular_rounds_rotate_options_and_answers(tmp_path):
    bench = read_benchmark(write_mc_tsv(tmp_path / "mc.tsv"), "multiple_choice", circular=True)
    assert [i.id for i in bench.items][:5] == ["10@0", "10@1", "10@2", "10@3", "11@0"]
    assert len(bench.items) == 4 + 3 + 2 + 2
    for item in bench.items:
        assert item.target["options"][item.target["answer"]] in ("a cat", "coffee", "no", "a rocket")
    assert "A. a cat\nB. a bird\nC. a fish\nD. a dog\n" in bench.items[1].question


def test_bad_rows_are_named_or_counted(tmp_path):
    bad_rows = [
        "14\tMissing fields\tonly three",  # malformed: too few fields
        ["15", "Which?", "", "x", "y", "", "", "E", "c", b64_image("coins")],  # answer not an option
        ["16", "Which?", "", "x", "y", "", "", "A", "c", ""],  # no image
    ]
    path = write_mc_tsv(tmp_path / "mc.tsv", bad_rows)
    with pytest.raises(BadSampleError) as err:
        read_benchmark(path, "seed")
    message = str(err.value)
    assert "3 bad sample(s) of 7" in message
    assert "line 6 (id '14'): malformed row: 3 fields, the header has 10" in message
    assert "line 7 (id '15'): unknown answer option: 'E' is not one of ['A', 'B']" in message
    assert "line 8 (id '16'): missing image" in message
    bench = read_benchmark(path, "seed", on_bad_sample="skip")
    assert len(bench.items) == 4 and len(bench.bad) == 3


def test_jsonl_formats_and_their_bad_rows(tmp_path):
    folder = image_folder(tmp_path)
    records = [
        {"question_id": 1, "image": "chelsea.jpg", "question": "What animal?", "answers": ["cat"] * 10},
        {"question_id": 2, "image": "coffee.jpg", "text": "What drink?", "answers": [{"answer": "coffee"}]},
        {"question_id": 3, "image": "absent.jpg", "question": "Where?"},
        "{not json",
        {"question_id": 4, "question": "No image?"},
    ]
    path = write_jsonl(tmp_path / "vqa.jsonl", records)
    bench = read_benchmark(path, "textvqa", image_folder=folder, on_bad_sample="skip")
    assert [i.id for i in bench.items] == ["1", "2"]
    assert bench.items[0].question == "What animal?\nAnswer the question using a single word or phrase."
    assert bench.items[1].target["answers"] == ["coffee"]
    assert [b.reason.split(":")[0] for b in bench.bad] == ["missing image", "malformed row", "missing image"]
    assert bench.bad[0].describe().endswith("line 3 (id '3'): missing image: " + f"{folder}/absent.jpg does not exist")

    pope = write_jsonl(tmp_path / "pope.jsonl", [
        {"question_id": 1, "image": "chelsea.jpg", "text": "Is there a cat?", "label": "yes"},
        {"question_id": 2, "image": "chelsea.jpg", "text": "Is there a dog?", "label": "maybe"}])
    with pytest.raises(BadSampleError, match="unknown answer option: label 'maybe' is not yes/no"):
        read_benchmark(pope, "pope", image_folder=folder)
    bench = read_benchmark(pope, "pope", image_folder=folder, on_bad_sample="skip")
    assert bench.items[0].question == "Is there a cat?\nPlease answer the question with yes or no."
    assert read_benchmark(pope, "pope", image_folder=folder, on_bad_sample="skip",
                          prompt_suffix="").items[0].question == "Is there a cat?"


def test_unknown_format_and_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark format 'chartqa'"):
        read_benchmark(str(tmp_path / "x.jsonl"), "chartqa")
    path = write_tsv(tmp_path / "x.tsv", ["index", "question"], [["1", "q"]])
    with pytest.raises(ValueError, match="not an MMBench-style TSV"):
        read_benchmark(path, "mmbench")
    with pytest.raises(ValueError, match="circular evaluation applies to the multiple_choice format only"):
        read_benchmark(path, "pope", circular=True)
    assert MC_HEADER[0] == "index"
