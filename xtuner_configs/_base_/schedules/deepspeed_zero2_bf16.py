# DeepSpeed ZeRO-2 in bf16 on 8 GPUs, carried by the config (no --deepspeed flag needed; xtuner train sees it).
# Global batch = batch_size x num_gpus x accumulative_counts.
from mmengine.config import read_base
from mmengine.runner import FlexibleRunner
from xtuner.engine import DeepSpeedStrategy

with read_base():
    from .adamw_warmup_cosine import *

num_gpus = 8
batch_size = 32  # per device
accumulative_counts = 1  # global batch 256 = 32 x 8 x 1

strategy = dict(
    type=DeepSpeedStrategy,
    config=dict(
        zero_optimization=dict(stage=2, overlap_comm=True),
        bf16=dict(enabled=True),
        zero_allow_untested_optimizer=True,
        zero_force_ds_cpu_optimizer=False,
    ),
    gradient_accumulation_steps=accumulative_counts,  # derive_settings keeps these two and the optimizer's lr
    train_micro_batch_size_per_gpu=batch_size,  # pointed at the config's settings
    gradient_clipping=max_norm,
    exclude_frozen_parameters=True,
)
optim_wrapper = dict(
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
)
runner_type = FlexibleRunner
