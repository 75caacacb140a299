# MG-LLaVA ablation, stage 2 (finetune), Vicuna-7B v1.5 on LLaVA-1.5's data (_base_/table5_finetune.py).
# Table 5a, Patch Info Mining (Mini-Gemini): each low-res token attends to its region of the high-res stages.
#   xtuner train xtuner_configs/vicuna_7b_v15/table5/mg_llava_vicuna_7b_v15_patch_info_mining_finetune.py
from mmengine.config import read_base

from mg_llava.model import PatchInfoMining

with read_base():
    from ..._base_.table5_finetune import *
    from ..._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_patch_info_mining_pretrain"  # its own stage 1
fusion_type = PatchInfoMining

derive_settings(globals())  # every part that holds a setting above
