"""`xtuner train` on a replica of the MG-LLaVA release's data layout, with bad samples planted in it.

The replica (mg_llava.testing.released_layout) is the release's tree under ./data of the run's working directory: one
training JSON mixing LLaVA-Pretrain and both ALLaVA sources with their relative image paths, one box JSON, the images
in LLaVA-Pretrain/images/<5 digits>/, allava_laion/images/ and allava_vflan/images/images_191task_1k/. The config is
the tiny stage 1 plus the one import line that switches a config to the release's layout. The run uses two ranks and a
DataLoader worker each, under on_bad_sample='skip': the two bad samples found at start-up and the two unreadable
images met while training must all be listed in the work dir, and counted in the log.
"""
import json
import os
import os.path as osp

import pytest
import torch
from test_tiny_training import ROOT, _check, scalars, xtuner_train

from mg_llava.testing.released_layout import build_released_layout

CONFIG = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_release_layout_pretrain.py")
# 12 samples, 2 left out at start-up: 10 over 2 ranks x batch 2 -> 3 iterations (the sampler pads each rank to 6)
ITERS = 3
OPTIONS = ["max_epochs=1", "warmup_ratio=0.5", "batch_size=2", "save_steps=2", "train_dataloader.num_workers=1",
           "train_dataloader.dataset.on_bad_sample=skip", "custom_hooks.0.max_new_tokens=1"]
KINDS = {  # planted kind -> how the record explains it
    "missing image": ("replaced", "unreadable image (missing)"),
    "truncated image": ("replaced", "unreadable image (unreadable)"),
    "no box entry": ("start-up", "missing box entry"),
    "no answer within max_length": ("start-up", "no answer tokens within max_length"),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("release_layout")
    os.makedirs(root / "work_dirs" / "tiny_assets")
    os.symlink(osp.dirname(tiny_models["clip"]), root / "work_dirs" / "tiny_assets" / "models")
    replica = build_released_layout(str(root / "data"), "pretrain", faults=True)
    work_dir = str(root / "work_dirs" / "release_layout")
    log = xtuner_train(root, CONFIG, work_dir, *OPTIONS, nproc=2)
    _check(log, osp.join(work_dir, f"iter_{ITERS}.pth"))
    with open(log) as f:
        text = f.read()
    return replica, work_dir, text


def test_the_tiny_model_trains_on_the_release_layout(run):
    replica, work_dir, log = run
    sources = {s["image"].split("/")[0] for s in replica["samples"]}
    assert sources == {"LLaVA-Pretrain", "allava_laion", "allava_vflan"}
    assert "Num train samples 10" in log  # 12 in the JSON, 2 left out at start-up
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == ITERS and all(map(torch.isfinite, torch.tensor(losses)))
    weights = torch.load(osp.join(work_dir, f"iter_{ITERS}.pth"), map_location="cpu", weights_only=True)["state_dict"]
    assert {key.split(".")[0] for key in weights} == {"fuse_module", "projector", "bbox_projector"}


def test_every_planted_bad_sample_is_listed_in_the_work_dir(run):
    replica, work_dir, log = run
    with open(osp.join(work_dir, "skipped_samples.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert {r["id"] for r in records} == set(replica["planted"])  # each planted one, and nothing else
    for record in records:
        when, reason = KINDS[replica["planted"][record["id"]]]
        assert record["when"] == when and record["reason"].startswith(reason), record
        assert record["file"] == "./data/train_json/pretrain_blip_allava_1266k.json"
        assert record["where"].startswith("item ")
        if when == "replaced":  # met in a worker of some rank, recorded by rank 0
            assert record["rank"] in (0, 1) and 1 <= record["iteration"] <= ITERS
    startup = sum(r["when"] == "start-up" for r in records)
    assert (f"bad samples: {len(records)} in all, {startup} left out at start-up and {len(records) - startup} "
            f"replaced during training (on_bad_sample='skip')") in log
