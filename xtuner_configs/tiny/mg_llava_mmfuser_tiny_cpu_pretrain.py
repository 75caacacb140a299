# MG-LLaVA + MMFuser stage 1 (pretrain) on the tiny CPU default: the 6-layer tiny CLIP's layers -6..-3 fused into -2
# by MMFuser, then the Conv-Gate with the tiny ConvNeXt, plus object tokens; fp32, gloo. Otherwise
# mg_llava_tiny_cpu_pretrain.py.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/mg_llava_mmfuser_tiny_cpu_pretrain.py
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.models.mmfuser_tiny import *

model.update(mmfuser_model)
model.fusion.high_res_fusion = dict(type=ConvGateFusion)  # then the Conv-Gate with the ConvNeXt map
for views in (image_views, llava_dataset.image_views, train_dataloader.dataset.image_views):
    views.image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path
image_processor = image_views.image_processor
# RoIAlign grid before averaging; the released models use 56, which costs CPU time here
model.object_features.output_size = object_roi_size = 7
del mmfuser_model, views
