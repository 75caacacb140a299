# MG-LLaVA's additions to LLaVA's model part (models/llava_vicuna_7b.py), with their settings: the high-res branch
# (open_clip ConvNeXt-L at 768 px), the Conv-Gate fusion and one RoIAlign token per object box (at most max_boxes per
# image, picked by box_rule). A part that builds MG-LLaVA on a LLaVA model puts them in with
# model.update(mg_llava_branches) and then deletes the fragment (models/mg_llava_vicuna_7b.py, the tiny MG-LLaVA
# configs); derive_settings writes the settings into the model, views, preprocessor and datasets.
from mg_llava.model import ConvGateFusion, MultiScaleRoIFeatures, OpenCLIPConvNeXtEncoder

# open_clip ConvNeXt-L (LAION-2B ft-soup): the folder of open_clip_pytorch_model.bin from
# laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup ("local-dir:<folder>" also works as the model name)
visual_encoder_aux_name = "convnext_large_d_320"
visual_encoder_aux_pretrained = "./pretrained/convnext_large_d_320/open_clip_pytorch_model.bin"
high_res = 768
object_roi_size = 56  # RoIAlign output grid before averaging (the released weights were trained with 56)
max_boxes = 100  # object tokens per image (frame) at most
box_rule = "clean"  # "released": the released checkpoints' box handling, to fine-tune them on what they saw
# Ablation switches, one line each in a config (paper Table 5; vicuna_7b_v15/table5/ has a config for each row):
#   fusion_type = ChannelConcatFusion     (or PatchInfoMining, PerceiverResampler; NoFusion: the low-res tokens only)
#   object_tokens = False                 (no object tokens; a stage-1 file's bbox_projector.* is then ignored with a
#                                          warning)
#   object_merge = FusedToBoxCrossAttention  (F-to-B: the fused tokens read the boxes, no box tokens; or
#                                             BoxToFusedCrossAttention, B-to-F: the box tokens read the fused tokens)
fusion_type = ConvGateFusion
object_tokens = True
object_merge = None  # the paper's: one projected token per box, after its image's tokens

mg_llava_branches = dict(
    visual_encoder_aux=dict(
        type=OpenCLIPConvNeXtEncoder, model_name=visual_encoder_aux_name, pretrained=visual_encoder_aux_pretrained
    ),
    fusion=dict(type=fusion_type),
    object_features=dict(type=MultiScaleRoIFeatures, output_size=object_roi_size),
)
