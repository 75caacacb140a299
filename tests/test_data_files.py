"""The one record reader (JSON list, JSONL, TSV) that every reader of annotations, boxes and benchmarks uses."""
import json

import pytest

from mg_llava.data_files import DataFileError, Record, read_json_list, read_records, read_tsv


def test_jsonl_records_locate_every_line_and_keep_bad_ones(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n\n{"id": \n\xff\xfe\n[2]\n')
    records = read_records(str(path), "annotation file")
    assert [(r.number, r.where, r.value) for r in records] == [
        (1, "line 1", {"id": 1}), (3, "line 3", None), (4, "line 4", None), (5, "line 5", [2])]
    assert [r.error is None for r in records] == [True, False, False, True]
    assert "Expecting value" in records[1].error and "utf-8" in records[2].error


def test_json_list_items_and_errors_name_the_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": "x"}, 3]))
    assert read_records(str(path), "annotation file") == [Record(0, "item 0", {"id": "x"}), Record(1, "item 1", 3)]
    path.write_text('{"id": "x"}')
    with pytest.raises(DataFileError, match=r"annotation file .*a\.json must hold a JSON list, got dict"):
        read_json_list(str(path), "annotation file")
    path.write_text('[{"id": "x"},\n {"id": ]')
    with pytest.raises(DataFileError, match=r"box file .*a\.json is not valid JSON \(.*line 2 column 9"):
        read_records(str(path), "box file")
    with pytest.raises(DataFileError, match=r"x\.csv: unknown record format"):
        read_records(str(tmp_path / "x.csv"), "annotation file")
    with pytest.raises(FileNotFoundError):
        read_records(str(tmp_path / "missing.jsonl"), "annotation file")


def test_tsv_rows_by_line_with_the_header(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text("index\tquestion\n0\tWhat?\n1\tWhy?\textra\n2\n")
    header, rows = read_tsv(str(path), "benchmark file")
    assert header == ["index", "question"]
    assert [(r.number, r.where) for r in rows] == [(2, "line 2"), (3, "line 3"), (4, "line 4")]
    assert rows[0].value == {"index": "0", "question": "What?"}
    assert rows[1].value[None] == ["extra"] and rows[2].value["question"] is None
    assert read_records(str(path), "benchmark file") == rows
    path = tmp_path / "c.jsonl"  # the caller's format wins over the extension
    path.write_text('[{"a": 1}]')
    assert read_records(str(path), "f", fmt=".json") == [Record(0, "item 0", {"a": 1})]
