# LLaVA-1.5 + MMFuser stage 1 (pretrain) on the tiny CPU default: the 6-layer tiny CLIP's layers -6..-3 fused into
# -2 by MMFuser; no high-res branch, no object tokens; fp32, gloo. Otherwise mg_llava_tiny_cpu_pretrain.py.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/llava_mmfuser_tiny_cpu_pretrain.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.models.mmfuser_tiny import *
    from .._base_.derive import derive_settings

object_tokens = False
model.update(mmfuser_model, visual_encoder_aux=None)
high_res = low_res  # no high-res branch
box_file = None
llava_dataset.allow_missing_boxes = True  # no object tokens
del mmfuser_model, visual_encoder_aux_name, visual_encoder_aux_pretrained, object_roi_size, max_boxes

derive_settings(globals())  # every part that holds a setting above
