# MG-LLaVA's released architecture: CLIP ViT-L/14-336 (low-res) + open_clip ConvNeXt-L (768 px, high-res), Conv-Gate
# fusion, one RoIAlign token per object box, Vicuna-7B v1.5 in bf16. Stage 1's form: the LLM is frozen. Shared by every
# config; a config changes the settings of PART 1 (another LLM: llm_name_or_path and prompt_template) and its
# derive_settings(globals()) writes them into the dicts of PART 2 (see xtuner_configs/README.md).
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion, MultiScaleRoIFeatures, OpenCLIPConvNeXtEncoder

with read_base():
    from .llava_vicuna_7b import *  # the LLM, CLIP, views and the model they make

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# open_clip ConvNeXt-L (LAION-2B ft-soup): the folder of open_clip_pytorch_model.bin from
# laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup ("local-dir:<folder>" also works as the model name)
visual_encoder_aux_name = "convnext_large_d_320"
visual_encoder_aux_pretrained = "./pretrained/convnext_large_d_320/open_clip_pytorch_model.bin"
high_res = 768
object_roi_size = 56  # RoIAlign output grid before averaging (the released weights were trained with 56)
# Ablation switches, one line each in a config:
#   fusion_type = ChannelConcatFusion     (or NoFusion: the low-res tokens only)
#   object_tokens = False                 (no object tokens; a stage-1 file's bbox_projector.* is then ignored with a
#                                          warning)
fusion_type = ConvGateFusion
object_tokens = True

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
# LLaVA's model with MG-LLaVA's high-res branch, fusion and object tokens (the views' and preprocessor's high_res
# follow the setting above through derive_settings)
model.update(
    visual_encoder_aux=dict(
        type=OpenCLIPConvNeXtEncoder, model_name=visual_encoder_aux_name, pretrained=visual_encoder_aux_pretrained
    ),
    fusion=dict(type=fusion_type),
    object_features=dict(type=MultiScaleRoIFeatures, output_size=object_roi_size),
)
