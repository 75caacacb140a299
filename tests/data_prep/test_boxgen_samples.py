"""Reading LLaVA training files and evaluation files (JSONL by question_id, MMBench-style TSV with base64)."""
import base64
import io
import json
import os.path as osp

import pytest

from mg_llava.boxgen.samples import DuplicateIdError, SampleFormatError, read_samples
from mg_llava.testing.images import load_skimage


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_llava_file_counts_text_only_video_and_shared_ids(tmp_path):
    rows = [dict(id="a", image="coco/1.jpg"), dict(id=7, image="coco/2.jpg"), dict(id="t", conversations=[]),
            dict(id="v", video="clip.mp4"), dict(id="a", image="coco/1.jpg")]  # 'a' again: same image
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows))
    samples, counts = read_samples(str(path), image_folder="/data", video_folder=False)
    assert [(s.id, s.path) for s in samples] == [("a", osp.join("/data", "coco/1.jpg")), ("7", "/data/coco/2.jpg")]
    assert counts == dict(rows=5, text_only=1, video_unsupported=1, duplicate_id_same_image=1, conflicting_ids=[])
    samples, counts = read_samples(str(path), image_folder="/data", video_folder="/videos")
    assert [(s.id, s.video, s.video_name) for s in samples if s.video] == [("v", "/videos/clip.mp4", "clip.mp4")]
    assert counts["video"] == 1 and "video_unsupported" not in counts


def test_an_id_naming_two_images_is_an_error_or_a_listed_skip(tmp_path):
    path = _jsonl(tmp_path / "dup.jsonl", [dict(id="a", image="1.jpg"), dict(id="b", image="2.jpg"),
                                           dict(id="a", image="3.jpg")])
    with pytest.raises(DuplicateIdError, match=r"1 id\(s\).*'a': 1.jpg vs 3.jpg"):
        read_samples(path)
    samples, counts = read_samples(path, on_conflict="skip")
    assert [s.id for s in samples] == ["b"]
    assert counts["duplicate_id_conflict"] == 1 and counts["conflicting_ids"] == ["a"]


def test_eval_jsonl_is_keyed_by_question_id(tmp_path):
    path = _jsonl(tmp_path / "textvqa.jsonl", [dict(question_id=11, image="x.jpg", text="what?"),
                                               dict(question_id=12, image="y.jpg", text="why?")])
    samples, _ = read_samples(path, image_folder="imgs")
    assert [(s.id, s.path) for s in samples] == [("11", "imgs/x.jpg"), ("12", "imgs/y.jpg")]
    samples, _ = read_samples(path, id_key="text")
    assert [s.id for s in samples] == ["what?", "why?"]


def test_mmbench_tsv_with_base64_images_and_references(tmp_path):
    buf = io.BytesIO()
    load_skimage("coins").save(buf, format="JPEG")
    data = base64.b64encode(buf.getvalue()).decode()
    lines = ["index\tquestion\tA\tB\timage", f"0\tHow many?\t1\t2\t{data}", "1\tWhich?\tx\ty\t0",
             "2\tNo image\tx\ty\t"]
    path = tmp_path / "mmbench.tsv"
    path.write_text("\n".join(lines) + "\n")
    samples, counts = read_samples(str(path))
    assert [s.id for s in samples] == ["0", "1"]
    assert samples[0].b64 == data and samples[1].b64 == data  # row 1 refers to row 0's image
    assert counts["text_only"] == 1


def test_malformed_rows_name_file_and_row(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [dict(id="a", image="1.jpg"), dict(image="2.jpg")])
    with pytest.raises(SampleFormatError, match=r"bad.jsonl:2: no id"):
        read_samples(path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "image": "1.jpg"}\n{"id": \n')
    with pytest.raises(SampleFormatError, match=r"broken.jsonl:2: invalid JSON"):
        read_samples(str(broken))
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps([dict(id="m", image=["1.jpg", "2.jpg"])]))
    with pytest.raises(SampleFormatError, match="'m' has 2 images"):
        read_samples(str(multi))
    with pytest.raises(SampleFormatError, match="unknown annotation format"):
        read_samples(str(tmp_path / "data.csv"))
