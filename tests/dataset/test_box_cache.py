"""The box-file cache: the same table as a fresh parse, memory-mapped, and rebuilt when the file changes."""
import json
import os

import numpy as np
import pytest

from mg_llava.dataset import box_file as box_file_module
from mg_llava.dataset import load_box_file

ENTRIES = [
    {"id": "a", "boxes": [[1, 2, 30, 40], [5, 6, 7, 8]], "scores": [0.9, 0.3], "labels": ["dog", "frisbee"]},
    {"id": "b", "boxes": [], "scores": [], "labels": []},
    {"id": "c", "boxes": [[0, 0, 5, float("nan")]], "scores": [0.5], "labels": ["dog"]},  # bad: non-finite
    {"id": "d", "boxes": [[3, 3, 9, 9]], "scores": [0.25], "labels": ["cat"]},
]


def _write(path, entries):
    path.write_text(json.dumps(entries))
    return str(path)


def _same(cached, fresh):
    assert cached.ids == fresh.ids and cached.label_names == fresh.label_names and cached.bad == fresh.bad
    for name in ("offsets", "boxes", "scores", "label_ids"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(fresh, name))
        assert getattr(cached, name).dtype == getattr(fresh, name).dtype


def test_cached_table_equals_a_fresh_parse_and_is_memory_mapped(tmp_path, monkeypatch):
    path = _write(tmp_path / "boxes.json", ENTRIES)
    fresh = load_box_file(path, strict=False)
    assert set(fresh.bad) == {"c"}
    first = load_box_file(path, strict=False, cache_dir=str(tmp_path / "cache"))
    _same(first, fresh)

    # The second read must come from the cache: parsing the JSON again would fail now.
    monkeypatch.setattr(box_file_module, "_build_table", lambda *a: pytest.fail("the box file was parsed again"))
    second = load_box_file(path, strict=False, cache_dir=str(tmp_path / "cache"))
    _same(second, fresh)
    assert isinstance(second.boxes, np.memmap)
    np.testing.assert_array_equal(second["a"].boxes, [[1, 2, 30, 40], [5, 6, 7, 8]])
    assert second["a"].labels == ("dog", "frisbee")


def test_a_changed_file_or_mode_is_parsed_again(tmp_path):
    path = _write(tmp_path / "boxes.json", ENTRIES[:2])
    cache = str(tmp_path / "cache")
    assert load_box_file(path, cache_dir=cache).ids == ["a", "b"]
    _write(tmp_path / "boxes.json", ENTRIES[:2] + ENTRIES[3:])
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert load_box_file(path, cache_dir=cache).ids == ["a", "b", "d"]
    assert len(os.listdir(cache)) == 2


def test_strict_mode_still_raises_and_caches_nothing(tmp_path):
    path = _write(tmp_path / "boxes.json", ENTRIES)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="'c'"):
        load_box_file(path, strict=True, cache_dir=str(cache))
    assert not list(cache.rglob("meta.json"))


def test_dataset_reads_its_boxes_through_the_cache(make_dataset, tmp_path):
    from dataset_helpers import image_sample

    entry = {"id": "c", "boxes": [[10, 20, 200, 250]], "scores": [0.8], "labels": ["cat"]}
    cache = tmp_path / "box_cache"
    plain = make_dataset([image_sample("c", "chelsea.png")], [entry])
    cached = make_dataset([image_sample("c", "chelsea.png")], [entry], box_cache_dir=str(cache))
    assert list(cache.rglob("meta.json")), "the dataset did not use its box cache"
    assert isinstance(cached.box_table.boxes, np.memmap)
    np.testing.assert_array_equal(cached[0]["boxes"][0].numpy(), plain[0]["boxes"][0].numpy())
