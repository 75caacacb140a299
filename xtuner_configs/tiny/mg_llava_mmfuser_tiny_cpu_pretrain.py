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
    from .._base_.derive import derive_settings

model.update(mmfuser_model)
model.fusion.high_res_fusion = dict(type=ConvGateFusion)  # then the Conv-Gate with the ConvNeXt map
object_roi_size = 7  # RoIAlign grid before averaging; the released models use 56, which costs CPU time here
del mmfuser_model

derive_settings(globals())  # every part that holds a setting above
