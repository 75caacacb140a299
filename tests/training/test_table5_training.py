"""Table 5's ablation modules trained on the tiny CPU default (xtuner_configs/tiny/mg_llava_tiny_cpu_pretrain.py with
the row's one switch, as `xtuner train ... --cfg-options fusion_type=...` sets it): mmengine's runner, in this
process, as XTuner's train.py builds it, in the stage-2 form (the LLM trains too; a random tiny LLM frozen barely moves
the loss). Every caption is the same sentence, so a few steps learn it: the loss falls and stays finite, and the
row's own module trains (every tensor moves) and is saved."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRETRAIN = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_pretrain.py")
SAME_CAPTION = "work_dirs/tiny_assets/data/pretrain_same_caption.json"
EPOCHS, ITERS = 3, 6  # 8 captions, batch 4
ROWS = {  # row -> (its switch, the module it adds, the saved prefixes)
    "patch_info_mining": (dict(fusion_type="PatchInfoMining"), "fuse_module", {"fuse_module", "projector",
                                                                              "bbox_projector"}),
    "resampler": (dict(fusion_type="PerceiverResampler"), "fuse_module", {"fuse_module", "projector",
                                                                          "bbox_projector"}),
    "f_to_b": (dict(object_merge="FusedToBoxCrossAttention"), "object_merge", {"fuse_module", "projector",
                                                                               "object_merge"}),
    "b_to_f": (dict(object_merge="BoxToFusedCrossAttention"), "object_merge", {"fuse_module", "projector",
                                                                               "bbox_projector", "object_merge"}),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    """A working directory laid out as tools/build_tiny_assets.py writes it, every caption the same sentence."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    root = tmp_path_factory.mktemp("table5_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    paths = build_tiny_dataset(str(assets / "data"))
    with open(paths["pretrain"]) as f:
        samples = json.load(f)
    for sample in samples:
        sample["conversations"][1]["value"] = "A photo taken with a camera."
    with open(root / SAME_CAPTION, "w") as f:
        json.dump(samples, f)
    return root


def train(workspace, row, monkeypatch):
    from xtuner.tools.train import register_function

    monkeypatch.chdir(workspace)
    cfg = Config.fromfile(PRETRAIN)
    switch = ROWS[row][0]
    # the switch and the schedule's settings derive the parts again (mg_llava.config_settings): warm up in the
    # first epoch, anneal in the others
    cfg.merge_from_dict(dict(switch, max_epochs=EPOCHS, warmup_ratio=1 / EPOCHS, save_steps=ITERS, **{
        "train_dataloader.dataset.data_path": SAME_CAPTION, "custom_hooks": [], "model.freeze_llm": False}))
    register_function(cfg._cfg_dict)  # as XTuner's train.py
    cfg.work_dir = str(workspace / "work_dirs" / row)
    runner = Runner.from_cfg(cfg)
    module = getattr(runner.model, ROWS[row][1])
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    runner.train()
    return runner, module, initial


@pytest.mark.parametrize("row", list(ROWS))
def test_row_trains_on_the_tiny_default(workspace, row, monkeypatch):
    runner, module, initial = train(workspace, row, monkeypatch)
    switch = ROWS[row][0]
    assert type(module).__name__ == switch.get("fusion_type", switch.get("object_merge"))
    with open(osp.join(runner.log_dir, "vis_data", "scalars.json")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    assert len(losses) == ITERS and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first - 0.5, f"the loss did not fall: {losses}"
    weights = torch.load(osp.join(runner.work_dir, f"iter_{ITERS}.pth"), map_location="cpu",
                         weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in weights} == ROWS[row][2] | {"llm"}
    prefix = ROWS[row][1] + "."
    saved = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    assert saved.keys() == initial.keys()
    changed = [k for k, v in saved.items() if not torch.equal(v, initial[k])]
    assert len(changed) == len(saved), f"{prefix}* did not train: {sorted(set(saved) - set(changed))}"
