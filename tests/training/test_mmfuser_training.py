"""The tiny MMFuser variants through the user's commands: training as `xtuner train` runs it (LLaVA-1.5 + MMFuser both
stages, MG-LLaVA + MMFuser stage 2; the loss falls), then export -> load -> identical logits, and chat / evaluation
from the export."""
import json
import os
import os.path as osp

import pytest
import torch

from test_tiny_training import _check, load_tool, load_weights, scalars, xtuner_train

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, "xtuner_configs", "tiny")
LLAVA_PRETRAIN = osp.join(TINY, "llava_mmfuser_tiny_cpu_pretrain.py")
LLAVA_FINETUNE = osp.join(TINY, "llava_mmfuser_tiny_cpu_finetune.py")
MG_FINETUNE = osp.join(TINY, "mg_llava_mmfuser_tiny_cpu_finetune.py")
# 8 captions, batch 4: 2 iterations an epoch; 33 instruction samples, batch 4: 9 an epoch. One epoch each.
STAGE1_ITERS, STAGE2_ITERS = 2, 9
# the configs' schedules span 10 / 40 epochs: fit warm-up and annealing into the short runs
STAGE1_OPTIONS = ["train_cfg.max_epochs=1", "param_scheduler.0.end=0.5", "param_scheduler.1.begin=0.5",
                  "param_scheduler.1.end=1"]
STAGE2_OPTIONS = ["train_cfg.max_epochs=1", "default_hooks.checkpoint.interval=100", "param_scheduler.0.end=0.25",
                  "param_scheduler.1.begin=0.25", "param_scheduler.1.end=1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    """A working directory laid out as tools/build_tiny_assets.py writes it (models shared with the session)."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    root = tmp_path_factory.mktemp("mmfuser_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    build_tiny_dataset(str(assets / "data"))
    return root


def losses_fell(work_dir, iters):
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == iters and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, f"the loss did not fall: first iterations {losses[:3]}, last {losses[-3:]}"


@pytest.fixture(scope="module")
def llava_stage2(workspace):
    stage1 = str(workspace / "work_dirs" / "llava_mmfuser_stage1")
    log = xtuner_train(workspace, LLAVA_PRETRAIN, stage1, *STAGE1_OPTIONS, cli=False)
    stage1_ckpt = osp.join(stage1, f"iter_{STAGE1_ITERS}.pth")
    _check(log, stage1_ckpt)
    weights = load_weights(stage1_ckpt)
    assert {key.split(".")[0] for key in weights} == {"fuse_module", "projector"}
    assert weights["fuse_module.cross_scale"].abs().sum() > 0, "MMFuser did not train in stage 1"

    work_dir = str(workspace / "work_dirs" / "llava_mmfuser_stage2")
    log = xtuner_train(workspace, LLAVA_FINETUNE, work_dir, f"model.pretrained_pth={stage1_ckpt}", *STAGE2_OPTIONS,
                       cli=False)
    checkpoint = osp.join(work_dir, f"iter_{STAGE2_ITERS}.pth")
    _check(log, checkpoint)
    with open(log) as f:
        assert f"trainable tensors from {stage1_ckpt}" in f.read()
    return work_dir, checkpoint


@pytest.fixture(scope="module")
def mg_stage2(workspace):
    work_dir = str(workspace / "work_dirs" / "mg_llava_mmfuser_stage2")
    log = xtuner_train(workspace, MG_FINETUNE, work_dir, "model.pretrained_pth=None", *STAGE2_OPTIONS, cli=False)
    checkpoint = osp.join(work_dir, f"iter_{STAGE2_ITERS}.pth")
    _check(log, checkpoint)
    return work_dir, checkpoint


def test_llava_mmfuser_trains_both_stages(llava_stage2):
    work_dir, checkpoint = llava_stage2
    weights = load_weights(checkpoint)
    assert {key.split(".")[0] for key in weights} == {"fuse_module", "projector", "llm"}
    assert weights["fuse_module.self_scale"].abs().sum() > 0
    losses_fell(work_dir, STAGE2_ITERS)


def test_mg_llava_mmfuser_trains(mg_stage2):
    work_dir, checkpoint = mg_stage2
    weights = load_weights(checkpoint)
    assert {key.split(".")[0] for key in weights} == {"fuse_module", "projector", "bbox_projector", "llm"}
    for key in ("fuse_module.cross_scale", "fuse_module.high_res_fusion.slow_proj.weight"):
        assert weights[key].abs().sum() > 0, f"{key} did not train"
    losses_fell(work_dir, STAGE2_ITERS)


def local_config(workspace, config):
    """The tiny config, flat (tools/list_configs.py --dump), with its asset paths made absolute (the tools run from
    any directory)."""
    text = load_tool("list_configs").dump_config(config)
    assert "work_dirs/tiny_assets/" in text
    path = workspace / osp.basename(config)
    path.write_text(text.replace("work_dirs/tiny_assets/", f"{workspace}/work_dirs/tiny_assets/"))
    return str(path)


@pytest.mark.parametrize("variant", ["llava", "mg"])
def test_export_round_trip_chat_and_evaluation(request, workspace, variant):
    """export -> load gives identical logits; chat answers the same from the config+checkpoint and from the export;
    evaluation runs on the export."""
    from mg_llava.dataset import load_box_file
    from mg_llava.inference import load_exported, load_from_config
    from mg_llava.inference.generation import llm_inputs_for_generation, pad_token_id

    _, checkpoint = request.getfixturevalue("llava_stage2" if variant == "llava" else "mg_stage2")
    config = local_config(workspace, LLAVA_FINETUNE if variant == "llava" else MG_FINETUNE)
    data = workspace / "work_dirs" / "tiny_assets" / "data"
    image = str(data / "images" / "chelsea.jpg")
    out_dir = str(workspace / f"export_{variant}")
    load_tool("export").main(["--config", config, "--checkpoint", checkpoint, "--out-dir", out_dir])
    with open(osp.join(out_dir, "mg_llava.json")) as f:
        spec = json.load(f)
    assert spec["fusion"]["type"] == "MultiLayerDeformableFusion"
    assert spec["visual_encoder"]["select_layer"] == [-6, -5, -4, -3, -2]

    loaded, back = load_from_config(config, checkpoint, device="cpu"), load_exported(out_dir, device="cpu")
    box_source = None if variant == "llava" else (load_box_file(str(data / "boxes.json")), "chelsea")
    samples = [loaded.preprocessor.sample("What is the main object in the image?", (),
                                          loaded.preprocessor.prepare_image(image, box_source)),
               loaded.preprocessor.sample("What is two plus two?")]
    logits = []
    for model in (loaded, back):
        inputs = llm_inputs_for_generation(model.model, samples, pad_token_id(model.tokenizer), model.device)
        position_ids = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits.append(model.model.llm(**inputs, position_ids=position_ids).logits)
    assert torch.equal(*logits)

    boxes = ["--no-boxes"] if variant == "llava" else ["--boxes", str(data / "boxes.json"), "--box-id", "chelsea"]
    chat = ["--device", "cpu", "--image", image, *boxes, "--prompt", "What is the main object in the image?",
            "--max-new-tokens", "8"]
    from_config = load_tool("chat").main(["--config", config, "--checkpoint", checkpoint, *chat])
    from_export = load_tool("chat").main(["--checkpoint", out_dir, *chat])
    assert from_export == from_config and len(from_export) == 1  # (one short epoch: the answer may be empty)

    questions = workspace / f"vqa_{variant}.jsonl"
    questions.write_text("".join(json.dumps(dict(question_id=f"q{i}", image=f"{name}.jpg", question="What is it?",
                                                 answers=[name] * 10)) + "\n"
                                 for i, name in enumerate(("chelsea", "coffee"))))
    box_file = workspace / f"vqa_{variant}_boxes.json"  # evaluation box files are keyed by question id
    box_file.write_text(json.dumps([dict(id=f"q{i}", boxes=[[10, 10, 60, 70]], scores=[0.9], labels=["thing"])
                                    for i in range(2)]))
    boxes = ["--no-boxes"] if variant == "llava" else ["--boxes", str(box_file)]
    result = load_tool("evaluate").main(["--checkpoint", out_dir, "--device", "cpu", "--benchmark", str(questions),
                                         "--format", "vqa", "--image-folder", str(data / "images"), *boxes,
                                         "--max-new-tokens", "4", "--num-workers", "0", "--no-progress",
                                         "--out-dir", str(workspace / f"eval_{variant}")])
    assert result["num_items"] == 2 and "accuracy" in result["metrics"]
