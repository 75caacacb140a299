# MMFuser (MultiLayerDeformableFusion) on CLIP ViT-L/14-336: layers -22/-17/-12/-7 fused into the query layer -2 by
# deformable attention. A config selects clip_layers in its visual encoder and puts mmfuser_fusion in as its fusion
# (MG-LLaVA + MMFuser adds the Conv-Gate as high_res_fusion).
from mg_llava.model import MultiLayerDeformableFusion

clip_layers = (-22, -17, -12, -7, -2)  # four shallow levels, then the query layer (LLaVA-1.5's and MG-LLaVA's -2)
mmfuser_heads = 16
mmfuser_points = 4
fusion_type = MultiLayerDeformableFusion  # the ablation switch (_base_/models/mg_llava_vicuna_7b.py), for MMFuser
mmfuser_fusion = dict(
    type=fusion_type, num_levels=len(clip_layers) - 1, num_heads=mmfuser_heads, num_points=mmfuser_points
)
