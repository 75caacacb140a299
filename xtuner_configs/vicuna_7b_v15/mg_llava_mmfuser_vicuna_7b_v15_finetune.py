# MG-LLaVA + MMFuser stage 2 (instruction tuning) with Vicuna-7B v1.5: starts from the stage-1 checkpoint
# (pretrained_pth) and trains the LLM (full), MMFuser, the Conv-Gate and both projectors; CLIP and ConvNeXt stay
# frozen. Otherwise mg_llava_vicuna_7b_v15_finetune.py (MG-LLaVA's data and recipe).
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_mmfuser_vicuna_7b_v15_finetune.py
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *
    from .._base_.models.mmfuser import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_mmfuser_vicuna_7b_v15_pretrain"  # stage 1's work dir: its last checkpoint
model.visual_encoder.select_layer = clip_layers
model.fusion = dict(mmfuser_fusion, high_res_fusion=dict(type=ConvGateFusion))  # MMFuser, then the Conv-Gate
del mmfuser_fusion

derive_settings(globals())  # every part that holds a setting above
