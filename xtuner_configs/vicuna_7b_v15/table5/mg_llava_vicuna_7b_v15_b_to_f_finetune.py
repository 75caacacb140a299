# MG-LLaVA ablation, stage 2 (finetune), Vicuna-7B v1.5 on LLaVA-1.5's data (_base_/table5_finetune.py).
# Table 5b, B-to-F cross-attention: the object features read the fused tokens, then are appended.
#   xtuner train xtuner_configs/vicuna_7b_v15/table5/mg_llava_vicuna_7b_v15_b_to_f_finetune.py
from mmengine.config import read_base

from mg_llava.model import BoxToFusedCrossAttention

with read_base():
    from ..._base_.table5_finetune import *
    from ..._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_b_to_f_pretrain"  # its own stage 1
object_merge = BoxToFusedCrossAttention

derive_settings(globals())  # every part that holds a setting above
