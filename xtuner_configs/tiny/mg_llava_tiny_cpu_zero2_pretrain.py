# MG-LLaVA stage 1 on the tiny CPU default, through the GPU recipes' training path: the shared DeepSpeed part
# (FlexibleRunner + XTuner's DeepSpeedStrategy, ZeRO-2, bf16) and the LLM loaded in bf16 as the GPU configs do. Only
# the model sizes, the data and the process-group backend (gloo, which `import mg_llava` picks without a GPU) differ.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    NPROC_PER_NODE=2 xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_zero2_pretrain.py
import torch
from mmengine.config import read_base

with read_base():  # the DeepSpeed part last: its optim_wrapper replaces the tiny pair's plain one
    from .mg_llava_tiny_cpu_pretrain import *  # noqa: F401,F403
    from .._base_.schedules.deepspeed_zero2_bf16 import optim_wrapper, runner_type, strategy
    from .._base_.derive import derive_settings

model.llm.torch_dtype = torch.bfloat16
model_wrapper_cfg = None  # DeepSpeed wraps the model itself

derive_settings(globals())  # every part that holds a setting above
