# AVG-LLaVA stage 3 (multi-granularity instruction tuning) on MG-LLaVA Vicuna-7B v1.5: starts from MG-LLaVA's stage-2
# checkpoint; each batch goes through the LLM once per granularity (576, 288, 144, 72, 36 grid tokens, each followed
# by the unpooled object tokens) and the loss is the mean of the five. What trains is what trains in MG-LLaVA's stage
# 2 (LLM, fusion, both projectors); the router is not used yet. Otherwise mg_llava_vicuna_7b_v15_finetune.py
# (MG-LLaVA's stage-2 data and recipe: DeepSpeed ZeRO-2, bf16, lr 2e-5, global batch 128).
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_multi_granularity.py
from mmengine.config import read_base

from mg_llava.model import AVGLLaVAModel, VisualGranularityRouter, VisualGranularityScaler

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_finetune/iter_10808.pth"  # MG-LLaVA stage 2: adjust
granularity_pools = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))  # (rows, cols) averaged: 576, 288, 144, 72, 36
router_instruction_tokens = 32  # instruction tokens the router reads (most similar to the image)
rglf_ce_weight = 0.1
rglf_margin = 1.0
model.update(
    type=AVGLLaVAModel,
    stage="multi_granularity",
    pretrained_pth=pretrained_pth,
    scaler=dict(type=VisualGranularityScaler, pools=granularity_pools),
    router=dict(type=VisualGranularityRouter, num_instruction_tokens=router_instruction_tokens, num_heads=8),
    rglf_ce_weight=rglf_ce_weight,
    rglf_margin=rglf_margin,
)
