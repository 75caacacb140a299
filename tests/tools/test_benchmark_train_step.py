"""tools/benchmark_train_step.py on the tiny configs: it trains, times each part, counts FLOPs and reports MFU."""
import json
import os
import os.path as osp
import runpy

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, "tools", "benchmark_train_step.py")
CONFIGS = dict(pretrain=osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_pretrain.py"),
               finetune=osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_finetune.py"))
PARTS = ["data_preprocessor", "clip", "convnext", "fusion", "object_branch", "projectors", "llm_forward", "other_forward", "backward",
         "optimizer"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_models):
    """Both tiny configs, run from a working directory holding the tiny assets as the configs expect them; the same
    seed and text length, so both stages see the same texts and boxes. Stage 1 hands the images over as the tiny
    configs do (uint8 high-res views), stage 2 as the GPU recipes do (decoded images, resized by the model's data
    preprocessor)."""
    tool = runpy.run_path(TOOL, run_name="benchmark_train_step")
    root = tmp_path_factory.mktemp("bench_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        results = {}
        for stage, config in CONFIGS.items():
            out = root / f"{stage}.json"
            decoded = ["--cfg-options", "train_dataloader.dataset.resize_on_device=True"]
            options = decoded if stage == "finetune" else []
            result = tool["main"]([config, "--steps", "2", "--warmup", "0", "--profile-steps", "1",
                                   "--batch-size", "2", "--text-median", "64", "--peak-tflops", "0.5",
                                   "--json", str(out), *options])
            with open(out) as f:
                results[stage] = (result, json.load(f))
    finally:
        os.chdir(cwd)
    return results


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_reports_a_consistent_step(runs, stage, capsys):
    result, written = runs[stage]
    assert written == json.loads(json.dumps(result))
    assert result["stage"] == stage and result["batch_size"] == 2 and result["dtype"] == "float32"
    assert result["hand_over"] == {"pretrain": "uint8", "finetune": "decoded"}[stage]
    assert all(s > 0 for s in result["all_step_seconds"]) and len(result["all_step_seconds"]) == 2
    assert result["samples_per_second"] == pytest.approx(2 / result["step_seconds"])
    # every sample: 16 image tokens (56 px / patch 14), its boxes (0-100) and its text
    assert 2 * 16 < result["tokens_per_step"] < 2 * (16 + 100 + 512)
    assert result["tokens_per_second"] == pytest.approx(result["tokens_per_step"] / result["step_seconds"])
    assert all(loss == loss and loss > 0 for loss in result["losses"])  # finite (NaN != NaN)
    assert list(result["part_shares"]) == PARTS
    assert all(result["part_seconds"][p] > 0 for p in PARTS if p != "other_forward")
    assert sum(result["part_shares"].values()) == pytest.approx(1.0)
    vision = sum(result["part_shares"][p] for p in ["clip", "convnext", "fusion", "object_branch", "projectors"])
    assert result["vision_side_share"] == pytest.approx(vision)
    macs = result["training_macs_per_part"]
    assert all(macs[p] > 0 for p in ["clip", "convnext", "fusion", "object_branch", "projectors", "llm_forward"])
    assert result["model_tflops_per_step"] == pytest.approx(2 * sum(macs.values()) / 1e12)
    assert result["mfu"] == pytest.approx(result["model_tflops_per_step"] / result["step_seconds"] / 0.5)
    assert result["peak_memory_mb"] > 0


def test_training_flops_follow_what_trains(runs):
    """Same batches in both stages: the frozen encoders cost the same, the LLM 3x its forward when it trains
    (stage 2) and 2x when frozen (stage 1, its backward only carries gradients to the projectors)."""
    pretrain, finetune = runs["pretrain"][0], runs["finetune"][0]
    assert pretrain["tokens_per_step"] == finetune["tokens_per_step"]
    for part in ["clip", "convnext", "object_branch", "fusion", "projectors"]:
        assert pretrain["training_macs_per_part"][part] == finetune["training_macs_per_part"][part]
    llm = {stage: runs[stage][0]["training_macs_per_part"]["llm_forward"] for stage in runs}
    assert llm["finetune"] * 2 == llm["pretrain"] * 3
    assert finetune["trainable_parameters"] > pretrain["trainable_parameters"]


def test_prints_the_table(runs, capsys):
    runpy.run_path(TOOL, run_name="benchmark_train_step")["print_table"](runs["finetune"][0])
    table = capsys.readouterr().out
    for text in ["step time (s)", "samples/s", "tokens/s", "peak memory (MB)", "MFU", "% of 0.5 TFLOP/s",
                 "vision side"] + PARTS:
        assert text in table


def test_real_configs_build_with_random_weights_at_published_shapes():
    """The GPU path's model building (hub ids -> published architectures), checked on the meta device: every part is
    there at its real size and the trainable set follows the stage."""
    import torch
    from mmengine.config import Config

    build_model = runpy.run_path(TOOL, run_name="benchmark_train_step")["build_model"]
    trainable = {}
    for stage in ["pretrain", "finetune"]:
        cfg = Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", f"mg_llava_vicuna_7b_v15_{stage}.py"))
        model = build_model(cfg, torch.device("meta"), torch.bfloat16)
        assert all(p.is_meta and p.dtype == torch.bfloat16 for p in model.parameters())
        assert model.llm.config.hidden_size == 4096 and model.visual_encoder.hidden_size == 1024
        assert model.visual_encoder_aux.out_channels == [192, 384, 768, 1536]
        assert model.object_features.output_size == 56 and model.object_features.impl == "separable"
        trainable[stage] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable["finetune"] - trainable["pretrain"] == 6_738_415_616  # Vicuna-7B v1.5
