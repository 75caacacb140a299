# MMFuser on the tiny CPU models: the 6-layer tiny CLIP (tools/build_tiny_assets.py's clip_deep), its layers -6..-3
# fused into -2 by deformable attention. Shared by the tiny LLaVA-MMFuser and MG-LLaVA + MMFuser configs, which put
# mmfuser_model into their model (model.update(mmfuser_model)) and point their image processor at
# visual_encoder_name_or_path.
from mg_llava.model import CLIPVisionEncoder, MultiLayerDeformableFusion

visual_encoder_name_or_path = "work_dirs/tiny_assets/models/clip_deep"  # 6 layers
clip_layers = (-6, -5, -4, -3, -2)  # MMFuser's four shallow levels and the query layer, on the tiny CLIP
mmfuser_heads = 4  # 8 channels a head, as the tiny CLIP is 32 wide
fusion_type = MultiLayerDeformableFusion  # the ablation switch (_base_/models/mg_llava_vicuna_7b.py), for MMFuser
mmfuser_model = dict(
    visual_encoder=dict(
        type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path, select_layer=clip_layers
    ),
    fusion=dict(type=fusion_type, num_levels=len(clip_layers) - 1, num_heads=mmfuser_heads),
)
