"""The tiny DeepSpeed configs run the GPU recipes' training path: the same strategy settings, optimizer wrapper,
runner and LLM dtype as the GPU configs of their ZeRO stage; only sizes, data and the process-group backend differ."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mg_llava.engine import SampleAnswersHook

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GPU = {2: "vicuna_7b_v15/mg_llava_vicuna_7b_v15", 3: "yi_1_5_34b/mg_llava_yi_1_5_34b"}


def training_hooks(cfg) -> list:
    return [hook["type"] for hook in cfg.get("custom_hooks", []) if hook["type"] is not SampleAnswersHook]


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("zero", [2, 3])
def test_tiny_deepspeed_config_trains_as_the_gpu_config(zero, stage):
    tiny = Config.fromfile(osp.join(ROOT, "xtuner_configs", "tiny", f"mg_llava_tiny_cpu_zero{zero}_{stage}.py"))
    gpu = Config.fromfile(osp.join(ROOT, "xtuner_configs", f"{GPU[zero]}_{stage}.py"))
    assert tiny.strategy.type is gpu.strategy.type and tiny.runner_type is gpu.runner_type
    assert tiny.strategy.config == gpu.strategy.config
    for key in ("gradient_clipping", "exclude_frozen_parameters"):
        assert tiny.strategy[key] == gpu.strategy[key], key
    assert tiny.strategy.train_micro_batch_size_per_gpu == tiny.train_dataloader.batch_size
    assert tiny.optim_wrapper.type == gpu.optim_wrapper.type == "DeepSpeedOptimWrapper"
    assert tiny.optim_wrapper.optimizer.type is gpu.optim_wrapper.optimizer.type
    assert tiny.model.llm.torch_dtype == gpu.model.llm.torch_dtype == torch.bfloat16
    # the same training hooks (ZeRO-3's trainable-weights writer); the sample-answer hook differs only in its sizes
    # and is not run by the tiny ZeRO-3 pair
    assert training_hooks(tiny) == training_hooks(gpu)
    assert tiny.env_cfg.dist_cfg.backend == "gloo"
    assert ("pretrained_pth" in tiny.model) == (stage == "finetune")
