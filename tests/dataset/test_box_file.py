"""The box-file reader: the released format, shared ids, and each kind of bad entry."""
import json
import math

import numpy as np
import pytest
from dataset_helpers import write_boxes

from mg_llava.dataset import load_box_file


def entry(sample_id, boxes, scores=None, labels=None):
    scores = scores if scores is not None else [0.5] * len(boxes)
    labels = labels if labels is not None else ["cat"] * len(boxes)
    return {"id": sample_id, "boxes": boxes, "scores": scores, "labels": labels}


def test_reads_the_released_format(tmp_path):
    path = write_boxes(
        tmp_path / "b.json",
        [
            entry("000000033471", [[1, 2, 30, 40], [5, 6, 7, 8]], [0.9, 0.3], ["dog", "frisbee"]),
            entry(7, [], [], []),  # int ids are read as strings; no boxes is fine
            entry("x", [[0, 0, 5, 5]], [0.25], ["dog"]),
        ],
    )
    table = load_box_file(path)
    assert len(table) == 3 and "7" in table and 7 in table and "y" not in table
    first = table["000000033471"]
    np.testing.assert_array_equal(first.boxes, np.array([[1, 2, 30, 40], [5, 6, 7, 8]], np.float32))
    np.testing.assert_array_equal(first.scores, np.array([0.9, 0.3], np.float32))
    assert first.labels == ("dog", "frisbee") and first.boxes.dtype == np.float32
    assert table["7"].boxes.shape == (0, 4)
    boxes, scores, label_ids = table.arrays(table.row("x"))
    assert table.label_names[label_ids[0]] == "dog"  # one label vocabulary across the file
    assert table.row("missing") == -1
    with pytest.raises(KeyError, match="'missing'"):
        table["missing"]


def test_shared_id_with_identical_entries_is_one_entry(tmp_path):
    same = entry("42", [[1, 2, 3, 4]])
    table = load_box_file(write_boxes(tmp_path / "b.json", [same, same]))
    assert len(table) == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        (entry("a", [[0, 0, math.nan, 5]]), "non-finite box or score at index 0: box \\[0.0, 0.0, nan, 5.0\\]"),
        (entry("a", [[0, 0, 5, 5]], scores=[math.inf]), "non-finite"),
        (entry("a", [[0, 0, 5, 5]], scores=[0.1, 0.2]), "1 boxes, 2 scores and 1 labels"),
        (entry("a", [[0, 0, 5]]), "boxes must be a list of \\[x1, y1, x2, y2\\], got \\[0, 0, 5\\]"),
        (entry("a", [[0, 0, "five", 5]]), "boxes/scores are not numbers: \\['five'\\]"),
        (entry("a", [[0, 0, None, 5]]), "boxes/scores are not numbers: \\[None\\]"),
        (entry("a", [[10, 0, 5, 5]]), "x2 < x1 or y2 < y1 at index 0: box \\[10.0, 0.0, 5.0, 5.0\\]"),
        (entry("a", [[0, 0, 5, 5]], scores=[[0.5]]), "boxes/scores are not numbers: \\[\\[0.5\\]\\]"),
        (entry("a", [[0, 0, 5, 5]], labels=[3]), "labels must be strings"),
        ({"id": "a", "boxes": []}, "missing keys \\['scores', 'labels'\\]"),
        ([entry("a", [[0, 0, 5, 5]]), entry("a", [[0, 0, 6, 6]])], "appears more than once with different boxes"),
    ],
)
def test_bad_entries_name_the_id_and_file(tmp_path, bad, message):
    entries = [entry("good", [[1, 1, 2, 2]])] + (bad if isinstance(bad, list) else [bad])
    path = write_boxes(tmp_path / "b.json", entries)
    with pytest.raises(ValueError, match=f"box file {path}, id 'a': {message}"):
        load_box_file(path)
    table = load_box_file(path, strict=False)  # the dataset's 'skip' policy reads this way
    assert list(table) == ["good"] and list(table.bad) == ["a"]


def test_outside_negative_and_zero_area_boxes_are_valid_entries(tmp_path):
    # these are handled by the load-time rules (clipped / dropped, see test_boxes.py), not rejected here
    boxes = [[-5, -5, 10, 10], [100, 100, 100, 120], [9000, 9000, 9100, 9100]]
    table = load_box_file(write_boxes(tmp_path / "b.json", [entry("a", boxes)]))
    np.testing.assert_array_equal(table["a"].boxes, np.array(boxes, np.float32))


def test_entries_without_id_and_bad_json_raise(tmp_path):
    with pytest.raises(ValueError, match="entry #1 has no 'id'"):
        load_box_file(write_boxes(tmp_path / "a.json", [entry("a", []), {"boxes": []}]))
    with pytest.raises(ValueError, match="neither 'id' nor 'video'"):
        load_box_file(write_boxes(tmp_path / "v.json", [{"frames": [{"boxes": [], "scores": [], "labels": []}]}]))
    (tmp_path / "c.json").write_text(json.dumps([entry("a", [])])[:-3])
    with pytest.raises(ValueError, match="c.json is not valid JSON"):
        load_box_file(str(tmp_path / "c.json"))


def frames(*per_frame):
    return [{"boxes": boxes, "scores": [0.5] * len(boxes), "labels": ["cat"] * len(boxes)} for boxes in per_frame]


def test_video_entries_keep_one_row_per_frame_next_to_image_entries(tmp_path):
    path = write_boxes(tmp_path / "v.json", [
        entry("img", [[0, 0, 4, 4]]),
        {"id": "clip", "video": "a/clip.mp4", "frames": frames([[1, 1, 5, 5]], [], [[2, 2, 6, 6], [3, 3, 9, 9]])},
        {"video": "b.mp4", "frames": frames([[7, 7, 8, 8]])},  # the released form: keyed by its video path
        {"id": "clip", "video": "a/clip.mp4", "frames": frames([[1, 1, 5, 5]], [], [[2, 2, 6, 6], [3, 3, 9, 9]])},
    ])
    for cache in (None, str(tmp_path / "cache")):
        table = load_box_file(path, cache_dir=cache)
        assert table.video_keys == ["clip", "b.mp4"] and table.frame_rows("img") is None
        rows = table.frame_rows("clip")
        assert len(rows) == 3 and rows == list(range(rows[0], rows[0] + 3))
        assert [len(table.arrays(r)[0]) for r in rows] == [1, 0, 2]
        np.testing.assert_array_equal(table.arrays(rows[2])[0], np.array([[2, 2, 6, 6], [3, 3, 9, 9]], np.float32))
        assert len(table.frame_rows("b.mp4")) == 1 and table.row("img") >= 0


def test_a_bad_frame_makes_its_video_entry_bad_and_names_the_frame(tmp_path):
    bad_frame = {"id": "clip", "video": "c.mp4", "frames": frames([[0, 0, 1, 1]], [[5, 5, 1, 1]])}  # x2 < x1
    path = write_boxes(tmp_path / "v.json", [entry("img", []), bad_frame])
    with pytest.raises(ValueError, match=r"id 'clip': frame 1: x2 < x1"):
        load_box_file(path)
    table = load_box_file(path, strict=False)
    assert table.frame_rows("clip") is None and table.bad["clip"].startswith("frame 1: x2 < x1")
    missing_key = {"id": "v2", "video": "d.mp4", "frames": [{"boxes": [], "scores": []}]}
    empty = {"id": "v3", "video": "e.mp4", "frames": []}
    table = load_box_file(write_boxes(tmp_path / "w.json", [missing_key, empty]), strict=False)
    assert table.bad["v2"].startswith("frame 0: missing keys") and "non-empty 'frames'" in table.bad["v3"]
