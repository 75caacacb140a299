# MG-LLaVA stage 2 on the tiny CPU default, through the GPU recipes' training path: FlexibleRunner + XTuner's
# DeepSpeedStrategy (ZeRO-2), bf16 weights. Only the model sizes, the data and the process-group backend (gloo,
# chosen by `import mg_llava` when there is no GPU) differ from the GPU configs.
# After stage 1:  NPROC_PER_NODE=2 xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_zero2_finetune.py
import torch
from mmengine.config import read_base
from mmengine.runner import FlexibleRunner
from xtuner.engine import DeepSpeedStrategy

with read_base():
    from .mg_llava_tiny_cpu_finetune import *  # noqa: F401,F403

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
pretrained_pth = "work_dirs/mg_llava_tiny_cpu_zero2_pretrain/iter_20.pth"  # stage 1's last checkpoint (a folder)
model.pretrained_pth = pretrained_pth
model.llm.torch_dtype = torch.bfloat16  # as the GPU configs load the LLM

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
# The GPU configs' DeepSpeed settings (ZeRO-2, bf16), unchanged.
zero_stage = 2
strategy = dict(
    type=DeepSpeedStrategy,
    config=dict(
        zero_optimization=dict(stage=zero_stage, overlap_comm=True),
        bf16=dict(enabled=True),
        zero_allow_untested_optimizer=True,
        zero_force_ds_cpu_optimizer=False,
    ),
    gradient_accumulation_steps=accumulative_counts,
    train_micro_batch_size_per_gpu=batch_size,
    gradient_clipping=max_norm,
    exclude_frozen_parameters=True,
)
optim_wrapper = dict(
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
)
runner_type = FlexibleRunner
model_wrapper_cfg = None  # DeepSpeed wraps the model itself
