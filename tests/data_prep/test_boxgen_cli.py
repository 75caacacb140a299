"""The data_prep command lines, run as scripts: generate (with decoding workers), merge, draw."""
import json
import os.path as osp
import runpy
import sys

import pytest
from PIL import Image

from boxgen_helpers import GOOD_IMAGES

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def script(name, *args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    runpy.run_path(osp.join(REPO, "data_prep", name), run_name="__main__")


def test_generate_merge_and_draw_from_the_command_line(tiny_models, llava_file, photo_dir, tmp_path, monkeypatch,
                                                       capsys):
    out = tmp_path / "out"
    models = ["--tagger", "clip", "--clip-model", tiny_models["clip"], "--vocabulary", "coco80", "--min-prob", "0",
              "--top-k", "3",
              "--detector", tiny_models["owlv2"], "--device", "cpu"]
    script("generate_boxes.py", "--data", llava_file, "--image-folder", photo_dir, "--out-dir", out,
           "--batch-size", 4, "--num-workers", 1, "--no-progress", *models, monkeypatch=monkeypatch)
    with open(out / "boxes.json") as f:
        entries = json.load(f)
    assert [e["id"] for e in entries] == [f"img{k}" for k in range(len(GOOD_IMAGES))]
    assert f"{len(GOOD_IMAGES)} images" in capsys.readouterr().out

    script("merge_boxes.py", "--out-dir", out, "--output", tmp_path / "again.json", monkeypatch=monkeypatch)
    assert (tmp_path / "again.json").read_text() == (out / "boxes.json").read_text()

    script("draw_boxes.py", "--data", llava_file, "--image-folder", photo_dir, "--boxes", out / "boxes.json",
           "--num", 5, "--cols", 3, "--out", tmp_path / "grid.png", monkeypatch=monkeypatch)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 384, 2 * (384 + 20))

    script("draw_boxes.py", "--data", llava_file, "--image-folder", photo_dir, "--num", 2, "--tagger", "coco80",
           "--detector", tiny_models["owlv2"], "--device", "cpu", "--out", tmp_path / "live.png",
           monkeypatch=monkeypatch)
    with Image.open(tmp_path / "live.png") as grid:
        assert grid.size == (2 * 384, 384 + 20)


def test_ram_plus_needs_a_checkpoint(llava_file, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="--ram-checkpoint"):
        script("generate_boxes.py", "--data", llava_file, "--out-dir", tmp_path, monkeypatch=monkeypatch)
