# MG-LLaVA + MMFuser stage 1 (pretrain) with Vicuna-7B v1.5: CLIP ViT-L/14-336's layers -22/-17/-12/-7 fused into
# layer -2 by MMFuser's deformable attention (MultiLayerDeformableFusion), then MG-LLaVA's Conv-Gate with the open_clip
# ConvNeXt-L (768 px) map, plus one token per object box. Trains MMFuser, the Conv-Gate and both projectors; CLIP,
# ConvNeXt and the LLM stay frozen. Otherwise mg_llava_vicuna_7b_v15_pretrain.py (MG-LLaVA's data and recipe).
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_mmfuser_vicuna_7b_v15_pretrain.py
from mmengine.config import read_base

from mg_llava.model import CLIPVisionEncoder, ConvGateFusion, MultiLayerDeformableFusion

with read_base():
    from .mg_llava_vicuna_7b_v15_pretrain import *

clip_layers = (-22, -17, -12, -7, -2)  # MMFuser: four shallow levels, then the query layer (MG-LLaVA's -2)
fusion_type = MultiLayerDeformableFusion  # the ablation switch, for this variant
mmfuser_heads = 16
mmfuser_points = 4
model.update(
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
