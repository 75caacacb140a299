# AVG-LLaVA stage 3 (multi-granularity instruction tuning) on the tiny CPU default: one LLM pass per granularity
# (16, 8, 4, 2, 1 tokens of the 4x4 grid), losses averaged; the LLM, the fusion and both projectors train.
# Otherwise mg_llava_tiny_cpu_finetune.py (data, lr, batch, CPU settings).
# After MG-LLaVA's two stages:  xtuner train xtuner_configs/tiny/avg_llava_tiny_cpu_multi_granularity.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.models.avg_llava import *

pretrained_pth = "work_dirs/mg_llava_tiny_cpu_finetune/iter_360.pth"  # MG-LLaVA stage 2's last checkpoint
model.update(avg_llava_model, stage="multi_granularity", pretrained_pth=pretrained_pth)
# RoIAlign grid before averaging; the released models use 56, which costs CPU time here
model.object_features.output_size = object_roi_size = 7
del avg_llava_model

max_epochs = 10
param_scheduler[0].end = param_scheduler[1].begin = warmup_ratio * max_epochs
param_scheduler[1].end = train_cfg.max_epochs = max_epochs
