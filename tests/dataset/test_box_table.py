"""The one box-entry lookup (chat, web demo, evaluation, lmms-eval): which entry a file or a benchmark item gets."""
import pytest
from dataset_helpers import write_boxes

from mg_llava.dataset import MissingBoxEntryError, entry_for_file, find_entry, load_box_file


def _frames(count):
    return [{"boxes": [[1, 1, 5, 5]], "scores": [0.5], "labels": ["cat"]} for _ in range(count)]


@pytest.fixture
def table(tmp_path):
    entries = [
        {"id": "chelsea", "boxes": [[1, 2, 30, 40]], "scores": [0.9], "labels": ["cat"]},
        {"id": "7", "boxes": [], "scores": [], "labels": []},
        {"id": "clip", "video": "videos/clip.mp4", "frames": _frames(2)},
        {"video": "videos/walk.mp4", "frames": _frames(3)},  # keyed by its video path
    ]
    return load_box_file(write_boxes(tmp_path / "boxes.json", entries))


def test_find_entry_takes_the_first_held_candidate(table):
    assert find_entry(table, [None, "missing", "7", "chelsea"]) == "7"
    assert find_entry(table, ["clip", "chelsea"]) == "chelsea"  # a video key is no image entry
    assert find_entry(table, ["chelsea", "clip"], video=True) == "clip"  # and an image id no video entry
    assert find_entry(table, ["videos/walk.mp4"], video=True) == "videos/walk.mp4"
    assert find_entry(table, [7]) == "7"
    assert find_entry(table, [None, "nope"]) is None


def test_entry_for_a_file(table, tmp_path):
    assert entry_for_file(table, "/data/chelsea.jpg") == "chelsea"  # the file's name without extension
    assert entry_for_file(table, "/data/other.jpg", box_id="7") == "7"  # the given id wins
    assert entry_for_file(table, "/data/clip.mp4", video=True) == "clip"
    assert entry_for_file(table, "videos/walk.mp4", video=True) == "videos/walk.mp4"  # by its path
    with pytest.raises(MissingBoxEntryError) as missing:
        entry_for_file(table, "/data/dog.png")
    assert missing.value.wanted == "dog"
    with pytest.raises(MissingBoxEntryError, match="no video entry 'x'"):
        entry_for_file(table, "/data/clip.mp4", box_id="x", video=True)


def test_a_single_entry_is_used_for_any_file(tmp_path):
    image = load_box_file(write_boxes(tmp_path / "one.json", [
        {"id": "only", "boxes": [], "scores": [], "labels": []}]))
    assert entry_for_file(image, "/data/whatever.jpg") == "only"
    video = load_box_file(write_boxes(tmp_path / "v.json", [{"id": "v", "frames": _frames(1)}]))
    assert entry_for_file(video, "/data/whatever.mp4", video=True) == "v"
