"""`xtuner train` through AVG-LLaVA's two stages on the tiny CPU configs: multi-granularity tuning, then RGLF."""
import json
import os.path as osp

import pytest
import torch
from test_tiny_training import _check, load_weights, scalars, workspace, xtuner_train  # noqa: F401 (fixture)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MULTI = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_untiled_multi_granularity.py")
RGLF = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_untiled_rglf.py")
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
    check_rglf_run(work_dir, log, stage3_ckpt, (2, 4), STAGE3_TRAINED)  # one file deploys


def check_rglf_run(work_dir, log, stage3_ckpt, iterations, stage3_trained):
    """An RGLF run from ``stage3_ckpt`` saved at ``iterations`` (early, last): it loaded stage 3, only the router
    changed, every stage-3 weight is kept in the checkpoint, and each loss is the router's CE + rank loss."""
    early_it, last_it = iterations
    _check(log, osp.join(work_dir, f"iter_{last_it}.pth"))
    with open(log) as f:
        assert f"trainable tensors from {stage3_ckpt}" in f.read()
    stage3_weights = load_weights(stage3_ckpt)
    early, late = (load_weights(osp.join(work_dir, f"iter_{i}.pth")) for i in iterations)
    assert {key.split(".")[0] for key in late} == stage3_trained | {"router"}
    for key, value in stage3_weights.items():
        assert torch.equal(late[key], value), f"{key} changed in RGLF"
    router = [key for key in late if key.startswith("router.")]
    assert any(not torch.equal(early[key], late[key]) for key in router), "the router did not train"
    rows = scalars(work_dir)
    assert sorted(rows) == list(range(1, last_it + 1))
    for row in rows.values():
        assert row["loss"] == pytest.approx(row["loss_router_ce"] + row["loss_router_rank"], rel=1e-4)
        assert 0.0 <= row["router_acc"] <= 1.0


ANYRES = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_multi_granularity.py")
ANYRES_RGLF = osp.join(ROOT, "xtuner_configs", "tiny", "avg_llava_tiny_cpu_rglf.py")
# chelsea (451x300) on the tiny 2x2 tiling: the crop-grid tokens (rows + row ends) at each grid granularity, worked
# by hand in tests/model/avg/test_avg_anyres.py
CHELSEA_TILE_TOKENS = {16: 54, 8: 30, 4: 10, 2: 6, 1: 6}


@pytest.fixture(scope="module")
def anyres_stage3(workspace, small_data):  # noqa: F811
    work_dir = str(workspace / "work_dirs" / "avg_anyres")
    log = xtuner_train(workspace, ANYRES, work_dir, "model.pretrained_pth=None", "train_cfg.max_epochs=1",
                       f"train_dataloader.dataset.data_path={small_data}")
    checkpoint = osp.join(work_dir, "iter_2.pth")
    _check(log, checkpoint)
    return work_dir, checkpoint


def test_anyres_config_trains_on_tiles_and_answers_about_a_tiled_image(workspace, anyres_stage3,  # noqa: F811
                                                                      monkeypatch, capsys):
    import importlib.util
    import re

    from mg_llava.inference import load_from_config
    from mg_llava.inference.evaluate import ModelAnswerer

    work_dir, checkpoint = anyres_stage3
    weights = load_weights(checkpoint)
    assert {key.split(".")[0] for key in weights} == STAGE3_TRAINED | {"anyres"}  # the row-end token trains
    rows = scalars(work_dir)
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert row["loss"] == pytest.approx(sum(row[f"lm_{n}"] for n in SIZES) / len(SIZES), rel=1e-4)

    monkeypatch.chdir(workspace)  # the config's assets are relative to the working directory
    spec = importlib.util.spec_from_file_location("tool_chat", osp.join(ROOT, "tools", "chat.py"))
    chat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chat)
    image, boxes = "work_dirs/tiny_assets/data/images/chelsea.jpg", "work_dirs/tiny_assets/data/boxes.json"
    options = ["--config", ANYRES, "--checkpoint", checkpoint, "--device", "cpu", "--image", image, "--boxes", boxes,
               "--prompt", "What is the main object in the image?", "--max-new-tokens", "3"]
    for extra in ([], ["--granularity", "4"]):
        capsys.readouterr()
        chat.main(options + extra)
        printed = capsys.readouterr().out
        found = re.search(r"\[visual tokens: (\d+) \(grid (\d+) \+ (\d+) tile \+ (\d+) object\)\]", printed)
        assert found, printed
        total, grid, tiles, objects = map(int, found.groups())
        assert tiles == CHELSEA_TILE_TOKENS[grid] and total == grid + tiles + objects and objects > 0
        assert grid == 4 or not extra

    loaded = load_from_config(ANYRES, checkpoint, device="cpu")
    from mg_llava.dataset import load_box_file

    prepared = loaded.preprocessor.prepare_image(image, (load_box_file(boxes), "chelsea"))
    sample = loaded.preprocessor.sample("Is there a cat in the image?", (), prepared, sample_id="chelsea")
    record = ModelAnswerer(loaded, max_new_tokens=2).answer([sample])[0]
    grid = record["granularity"][0]
    assert record["tile_tokens"] == CHELSEA_TILE_TOKENS[grid]
    assert record["visual_tokens"] == grid + CHELSEA_TILE_TOKENS[grid] + len(prepared.boxes)

    # the export carries the tiling (views and row-end token): the same answer and token counts from it
    from mg_llava.inference import load_exported
    from mg_llava.inference.export import export_model

    back = load_exported(export_model(loaded, str(workspace / "anyres_export")), device="cpu")
    assert back.spec["image"]["grid_pinpoints"] == [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]
    assert ModelAnswerer(back, max_new_tokens=2).answer([sample]) == [record]


def test_anyres_rglf_config_trains_only_the_router_on_tiled_images(workspace, anyres_stage3, small_data):  # noqa: F811
    """avg_llava_tiny_cpu_rglf.py through `xtuner train` from the tiled stage 3: the router learns from the
    per-granularity losses on tiles; everything stage 3 trained, the row-end token included, stays as it was."""
    _, stage3_ckpt = anyres_stage3
    work_dir = str(workspace / "work_dirs" / "avg_anyres_rglf")
    log = xtuner_train(workspace, ANYRES_RGLF, work_dir, f"model.pretrained_pth={stage3_ckpt}",
                       "train_cfg.max_epochs=1", "default_hooks.checkpoint.interval=1",
                       f"train_dataloader.dataset.data_path={small_data}",
                       "param_scheduler.0.end=0.5", "param_scheduler.1.begin=0.5", "param_scheduler.1.end=1")
    check_rglf_run(work_dir, log, stage3_ckpt, (1, 2), STAGE3_TRAINED | {"anyres"})
