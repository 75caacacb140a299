"""`xtuner train` through AVG-LLaVA's two stages on the tiny CPU configs: multi-granularity tuning, then RGLF."""
import json
import os.path as osp

import pytest
import torch
from test_tiny_training import _check, load_weights, scalars, workspace, xtuner_train  # noqa: F401 (fixture)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MULTI = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_multi_granularity.py")
RGLF = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_rglf.py")
SMALL = "work_dirs/tiny_assets/data/finetune_small.json"  # 8 samples, batch 4: 2 iterations an epoch
SIZES = (16, 8, 4, 2, 1)
STAGE3_TRAINED = {"fuse_module", "projector", "bbox_projector", "llm"}


@pytest.fixture(scope="module")
def small_data(workspace):  # noqa: F811
    with open(workspace / "work_dirs/tiny_assets/data/finetune.json") as f:
        samples = json.load(f)
    with open(workspace / SMALL, "w") as f:
        json.dump(samples[:7] + [s for s in samples if "image" not in s][:1], f)  # the text-only sample too
    return SMALL


@pytest.fixture(scope="module")
def stage3(workspace, small_data):  # noqa: F811
    work_dir = str(workspace / "work_dirs" / "avg_stage3")
    log = xtuner_train(workspace, MULTI, work_dir, "model.pretrained_pth=None", "train_cfg.max_epochs=1",
                       f"train_dataloader.dataset.data_path={small_data}")
    _check(log, osp.join(work_dir, "iter_2.pth"))
    return work_dir


def test_multi_granularity_stage_trains_on_the_mean_of_five_passes(stage3):
    weights = load_weights(osp.join(stage3, "iter_2.pth"))
    assert {key.split(".")[0] for key in weights} == STAGE3_TRAINED  # no router yet, no encoders
    rows = scalars(stage3)
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        per_granularity = [row[f"lm_{n}"] for n in SIZES]
        assert row["loss"] == pytest.approx(sum(per_granularity) / len(SIZES), rel=1e-4)
        assert len(set(per_granularity)) > 1  # the granularities do give the LLM different inputs


def test_rglf_stage_trains_only_the_router_from_stage_3(workspace, stage3, small_data):  # noqa: F811
    work_dir = str(workspace / "work_dirs" / "avg_rglf")
    stage3_ckpt = osp.join(stage3, "iter_2.pth")
    log = xtuner_train(workspace, RGLF, work_dir, f"model.pretrained_pth={stage3_ckpt}", "train_cfg.max_epochs=2",
                       "default_hooks.checkpoint.interval=2", f"train_dataloader.dataset.data_path={small_data}",
                       "param_scheduler.0.end=0.5", "param_scheduler.1.begin=0.5", "param_scheduler.1.end=2")
    _check(log, osp.join(work_dir, "iter_4.pth"))
    with open(log) as f:
        assert f"trainable tensors from {stage3_ckpt}" in f.read()
    stage3_weights = load_weights(stage3_ckpt)
    early, late = (load_weights(osp.join(work_dir, f"iter_{i}.pth")) for i in (2, 4))
    assert {key.split(".")[0] for key in late} == STAGE3_TRAINED | {"router"}  # one file deploys
    for key, value in stage3_weights.items():
        assert torch.equal(late[key], value), f"{key} changed in RGLF"
    router = [key for key in late if key.startswith("router.")]
    assert any(not torch.equal(early[key], late[key]) for key in router), "the router did not train"
    rows = scalars(work_dir)
    assert sorted(rows) == [1, 2, 3, 4]
    for row in rows.values():
        assert row["loss"] == pytest.approx(row["loss_router_ce"] + row["loss_router_rank"], rel=1e-4)
        assert 0.0 <= row["router_acc"] <= 1.0
