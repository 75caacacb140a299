# AVG-LLaVA stage 3 (multi-granularity instruction tuning) on untiled images, MG-LLaVA Vicuna-7B v1.5: starts from
# MG-LLaVA's stage-2 checkpoint; each batch goes through the LLM once per granularity (576, 288, 144, 72, 36 grid
# tokens, each followed by the unpooled object tokens) and the loss is the mean of the five. What trains is what trains
# in MG-LLaVA's stage 2 (LLM, fusion, both projectors); the router is not used yet. Otherwise
# mg_llava_vicuna_7b_v15_finetune.py (MG-LLaVA's stage-2 data and recipe: DeepSpeed ZeRO-2, bf16, lr 2e-5, global batch
# 128).
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_untiled_multi_granularity.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *
    from .._base_.models.avg_llava import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_finetune"  # MG-LLaVA stage 2's work dir: its last checkpoint
model.update(avg_llava_model, stage="multi_granularity")
del avg_llava_model

derive_settings(globals())  # every part that holds a setting above
