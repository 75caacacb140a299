# MG-LLaVA + MMFuser stage 2 (instruction tuning) with Vicuna-7B v1.5: starts from the stage-1 checkpoint
# (pretrained_pth) and trains the LLM (full), MMFuser, the Conv-Gate and both projectors; CLIP and ConvNeXt stay
# frozen. Otherwise mg_llava_vicuna_7b_v15_finetune.py (MG-LLaVA's data and recipe).
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_mmfuser_vicuna_7b_v15_finetune.py
from mmengine.config import read_base

from mg_llava.model import CLIPVisionEncoder, ConvGateFusion, MultiLayerDeformableFusion

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *

clip_layers = (-22, -17, -12, -7, -2)  # MMFuser: four shallow levels, then the query layer (MG-LLaVA's -2)
fusion_type = MultiLayerDeformableFusion  # the ablation switch, for this variant
mmfuser_heads = 16
mmfuser_points = 4
pretrained_pth = "./work_dirs/mg_llava_mmfuser_vicuna_7b_v15_pretrain/iter_4942.pth"  # stage 1's last checkpoint
model.update(
    pretrained_pth=pretrained_pth,
    visual_encoder=dict(
        type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path, select_layer=clip_layers
    ),
    fusion=dict(  # MMFuser on the CLIP layers, then the Conv-Gate with the ConvNeXt map
        type=fusion_type,
        num_levels=len(clip_layers) - 1,
        num_heads=mmfuser_heads,
        num_points=mmfuser_points,
        high_res_fusion=dict(type=ConvGateFusion),
    ),
)
