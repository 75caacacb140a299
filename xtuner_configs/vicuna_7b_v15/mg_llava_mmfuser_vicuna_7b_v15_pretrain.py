# MG-LLaVA + MMFuser stage 1 (pretrain) with Vicuna-7B v1.5: CLIP ViT-L/14-336's layers -22/-17/-12/-7 fused into
# layer -2 by MMFuser's deformable attention (MultiLayerDeformableFusion), then MG-LLaVA's Conv-Gate with the open_clip
# ConvNeXt-L (768 px) map, plus one token per object box. Trains MMFuser, the Conv-Gate and both projectors; CLIP,
# ConvNeXt and the LLM stay frozen. Otherwise mg_llava_vicuna_7b_v15_pretrain.py (MG-LLaVA's data and recipe).
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_mmfuser_vicuna_7b_v15_pretrain.py
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion

with read_base():
    from .mg_llava_vicuna_7b_v15_pretrain import *
    from .._base_.models.mmfuser import *
    from .._base_.derive import derive_settings

model.visual_encoder.select_layer = clip_layers
model.fusion = dict(mmfuser_fusion, high_res_fusion=dict(type=ConvGateFusion))  # then the Conv-Gate with ConvNeXt
del mmfuser_fusion

derive_settings(globals())  # every part that holds a setting above
