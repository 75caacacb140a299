"""The whole pipeline on real photos: format, resume after a kill, sharding + merge, bad input, summary."""
import base64
import json
import os
import os.path as osp
import shutil

import pytest
from boxgen_helpers import GOOD_IMAGES, photo, write_llava
from PIL import Image

from mg_llava.boxgen.pipeline import resolve_shard, run_shard
from mg_llava.boxgen.samples import DuplicateIdError
from mg_llava.boxgen.shards import IncompleteRunError, RunMismatchError, merge_shards, part_dir, read_part_records


class Killed(Exception):
    pass


def kill_after(num_batches):
    def hook(batch_index):
        if batch_index + 1 == num_batches:
            raise Killed
    return hook


def run(generator, annotation, out_dir, photo_dir, **kwargs):
    kwargs = dict(dict(image_folder=photo_dir, batch_size=2, num_workers=0, progress=False), **kwargs)
    return run_shard(generator, annotation, str(out_dir), **kwargs)


@pytest.fixture(scope="module")
def unsharded(generator, llava_file, photo_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("unsharded")
    report = run(generator, llava_file, out_dir, photo_dir)
    summary = merge_shards(str(out_dir))
    with open(summary["box_file"], "rb") as f:
        return dict(out_dir=str(out_dir), report=report, summary=summary, data=f.read())


def test_box_file_is_the_released_format_in_original_pixels(unsharded, photo_dir):
    entries = json.loads(unsharded["data"])
    assert [e["id"] for e in entries] == [f"img{k}" for k in range(len(GOOD_IMAGES))]  # input order
    parts = read_part_records(part_dir(unsharded["out_dir"], 0, 1))
    total = 0
    for entry, name in zip(entries, GOOD_IMAGES):
        assert set(entry) == {"id", "boxes", "scores", "labels"}
        assert isinstance(entry["id"], str)
        assert len(entry["boxes"]) == len(entry["scores"]) == len(entry["labels"])
        width, height = photo(photo_dir, name).size
        for x1, y1, x2, y2 in entry["boxes"]:
            assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (name, width, height)
        assert all(0.2 < s <= 1 for s in entry["scores"]) and entry["scores"] == sorted(entry["scores"], reverse=True)
        assert set(entry["labels"]) <= set(parts[entry["id"]]["tags"])
        total += len(entry["boxes"])
    assert total > 0 and unsharded["summary"]["boxes_total"] == total


def test_box_file_loads_through_the_training_dataset_reader(unsharded):
    from mg_llava.dataset import load_box_file

    table = load_box_file(unsharded["summary"]["box_file"])
    entries = json.loads(unsharded["data"])
    assert len(table) == len(entries)
    for entry in entries:
        loaded = table[entry["id"]]
        assert loaded.boxes.tolist() == entry["boxes"] and list(loaded.labels) == entry["labels"]


def test_summary_json_and_png(unsharded):
    summary = unsharded["summary"]
    assert sum(summary["boxes_per_image_histogram"].values()) == summary["images"] == len(GOOD_IMAGES)
    assert summary["converted_image_modes"] == {"L": 1, "RGBA": 1}
    assert summary["skipped_total"] == 0 and summary["input"]["rows"] == len(GOOD_IMAGES)
    assert summary["generator"]["detector"]["score_threshold"] == 0.2
    out_dir = osp.dirname(summary["box_file"])
    with open(osp.join(out_dir, "summary.json")) as f:
        assert json.load(f) == summary
    with Image.open(osp.join(out_dir, "summary_boxes_per_image.png")) as png:
        assert png.format == "PNG" and png.width > 300


def test_a_killed_run_resumes_to_identical_output(generator, llava_file, photo_dir, tmp_path, unsharded):
    with pytest.raises(Killed):
        run(generator, llava_file, tmp_path, photo_dir, chunks_per_segment=2, on_batch_end=kill_after(3))
    shard_dir = part_dir(str(tmp_path), 0, 1)
    assert len(read_part_records(shard_dir)) == 6  # three batches of two reached the disk, nothing more
    assert not osp.exists(osp.join(shard_dir, "done.json"))
    with pytest.raises(IncompleteRunError, match=r"shard 0: unfinished \(6/9"):
        merge_shards(str(tmp_path))
    # What a kill can leave behind: a half-written temp file, and chunks whose compaction into a segment
    # finished but whose deletion did not (their records are then on disk twice).
    open(osp.join(shard_dir, ".tmp-chunk-00000003.jsonl-999"), "w").write('{"pos": 6, "id": "im')
    segment = sorted(p for p in os.listdir(shard_dir) if p.startswith("segment"))[0]
    with open(osp.join(shard_dir, segment)) as src, open(osp.join(shard_dir, "chunk-00000000.jsonl"), "w") as dst:
        dst.write(src.read())

    report = run(generator, llava_file, tmp_path, photo_dir, chunks_per_segment=2)
    assert report["resumed_done"] == 6 and report["processed"] == len(GOOD_IMAGES) - 6
    summary = merge_shards(str(tmp_path))
    with open(summary["box_file"], "rb") as f:
        assert f.read() == unsharded["data"]
    assert not [p for p in os.listdir(shard_dir) if p.startswith(".tmp-")]
    # a finished shard run again does nothing
    assert run(generator, llava_file, tmp_path, photo_dir)["processed"] == 0


def test_shards_merge_to_the_unsharded_output(generator, llava_file, photo_dir, tmp_path, unsharded):
    reports = [run(generator, llava_file, tmp_path, photo_dir, shard=s, num_shards=3) for s in (0, 2)]
    assert [r["samples"] for r in reports] == [3, 3]
    with pytest.raises(IncompleteRunError, match=r"shard 1: never started \(0/3 samples\)"):
        merge_shards(str(tmp_path))
    run(generator, llava_file, tmp_path, photo_dir, shard=1, num_shards=3)
    summary = merge_shards(str(tmp_path), output=str(tmp_path / "merged.json"))
    with open(summary["box_file"], "rb") as f:
        assert f.read() == unsharded["data"]
    assert summary["num_shards"] == 3


def test_resuming_with_other_settings_is_refused(make_generator, generator, llava_file, photo_dir, unsharded):
    with pytest.raises(RunMismatchError, match="num_shards: was 1, now 2"):
        run(generator, llava_file, unsharded["out_dir"], photo_dir, shard=0, num_shards=2)
    with pytest.raises(RunMismatchError, match="generator"):
        run(make_generator(score_threshold=0.3), llava_file, unsharded["out_dir"], photo_dir)


def test_an_edited_input_file_is_not_resumed_as_if_unchanged(generator, photo_dir, tmp_path):
    first = write_llava(tmp_path / "data.json", ["coffee.jpg", "rocket.jpg"])
    run(generator, first, tmp_path / "out", photo_dir)
    write_llava(tmp_path / "data.json", ["coffee.jpg", "coins.jpg"])  # same ids and count, other image
    with pytest.raises(RunMismatchError, match="samples_sha1"):
        run(generator, first, tmp_path / "out", photo_dir)


def test_mmbench_tsv_with_base64_images_end_to_end(generator, photo_dir, tmp_path):
    def b64(name):
        return base64.b64encode(open(osp.join(photo_dir, name), "rb").read()).decode()

    rows = ["index\tquestion\tA\tB\timage", f"10\tq\ta\tb\t{b64('coffee.jpg')}", "11\tq\ta\tb\t10",
            "12\tq\ta\tb\tbm90IGFuIGltYWdl", f"13\tq\ta\tb\t{b64('gray.png')}"]
    (tmp_path / "mmbench.tsv").write_text("\n".join(rows) + "\n")
    run(generator, str(tmp_path / "mmbench.tsv"), tmp_path / "out", None)
    summary = merge_shards(str(tmp_path / "out"))
    with open(summary["box_file"]) as f:
        entries = json.load(f)
    assert [e["id"] for e in entries] == ["10", "11", "13"]
    assert entries[0]["boxes"] == entries[1]["boxes"]  # row 11 reuses row 10's image
    assert summary["skipped"] == {"unreadable": 1} and summary["skipped_samples"][0]["id"] == "12"


def test_bad_inputs_are_counted_skips_and_nothing_is_lost(generator, photo_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("coffee.jpg", "gray.png"):
        shutil.copy(osp.join(photo_dir, name), folder / name)
    (folder / "garbage.jpg").write_bytes(b"not an image")
    whole = open(osp.join(photo_dir, "astronaut.jpg"), "rb").read()
    (folder / "truncated.jpg").write_bytes(whole[:len(whole) // 3])
    Image.new("1", (9500, 9500)).save(folder / "bomb.png")
    images = ["coffee.jpg", "missing.jpg", "garbage.jpg", "gray.png", "truncated.jpg", "bomb.png"]
    extra = [dict(id="text", conversations=[]), dict(id="img0", image="coffee.jpg")]  # text-only; shared id
    annotation = write_llava(tmp_path / "bad.json", images, extra_rows=extra)

    run(generator, annotation, tmp_path / "out", str(folder))
    summary = merge_shards(str(tmp_path / "out"))
    assert summary["skipped"] == {"missing": 1, "too_large": 1, "unreadable": 2}
    skipped = {s["id"]: s for s in summary["skipped_samples"]}
    assert skipped["img1"]["skipped"] == "missing" and "missing.jpg" in skipped["img1"]["error"]
    assert skipped["img5"]["skipped"] == "too_large" and "9500x9500" in skipped["img5"]["error"]
    assert summary["input"]["text_only"] == 1 and summary["input"]["duplicate_id_same_image"] == 1
    with open(summary["box_file"]) as f:
        boxed = [e["id"] for e in json.load(f)]
    assert boxed == ["img0", "img3"]
    assert sorted(boxed + list(skipped)) == [f"img{k}" for k in range(len(images))]  # every image accounted for
    with open(summary["skipped_file"]) as f:
        assert [s["id"] for s in json.load(f)] == ["img1", "img2", "img4", "img5"]
    assert summary["converted_image_modes"] == {"L": 1}


def test_conflicting_duplicate_ids_stop_the_run_or_are_listed(generator, photo_dir, tmp_path):
    annotation = write_llava(tmp_path / "dup.json", ["coffee.jpg", "rocket.jpg"],
                             extra_rows=[dict(id="img0", image="coins.jpg")])
    with pytest.raises(DuplicateIdError, match="'img0': .*coffee.jpg vs .*coins.jpg"):
        run(generator, annotation, tmp_path / "a", photo_dir)
    run(generator, annotation, tmp_path / "b", photo_dir, on_duplicate_conflict="skip")
    summary = merge_shards(str(tmp_path / "b"))
    assert summary["input"]["conflicting_ids"] == ["img0"] and summary["images"] == 1


def test_images_without_tags_get_empty_records_and_are_counted(make_generator, tiny_models, llava_file,
                                                                photo_dir, tmp_path):
    picky = make_generator(tagger=dict(type="CLIPTagger", model=tiny_models["clip"], vocabulary=["cat", "dog"],
                                       min_prob=0.99))
    run(picky, llava_file, tmp_path, photo_dir)
    summary = merge_shards(str(tmp_path))
    assert summary["images_without_tags"] == summary["images"] == len(GOOD_IMAGES)
    assert summary["boxes_per_image_histogram"]["0"] == len(GOOD_IMAGES)
    with open(summary["box_file"]) as f:
        assert all(e["boxes"] == [] for e in json.load(f))


def test_a_failing_batch_names_its_samples(generator, llava_file, photo_dir, tmp_path, monkeypatch):
    def broken(images):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(generator.tagger, "tag", broken)
    with pytest.raises(RuntimeError, match=r"samples \['img0', 'img1'\]: CUDA out of memory"):
        run(generator, llava_file, tmp_path, photo_dir)


def test_shard_from_arguments_or_torchrun_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert resolve_shard() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    assert resolve_shard() == (5, 8)
    assert resolve_shard(1, 4) == (1, 4)  # explicit (slurm array) wins
    with pytest.raises(ValueError, match="both"):
        resolve_shard(shard=1)
    with pytest.raises(ValueError, match=r"not in \[0, 4\)"):
        resolve_shard(4, 4)
