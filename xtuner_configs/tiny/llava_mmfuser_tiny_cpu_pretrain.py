# LLaVA-1.5 + MMFuser stage 1 (pretrain) on the tiny CPU default: the 6-layer tiny CLIP's layers -6..-3 fused into
# -2 by MMFuser; no high-res branch, no object tokens; fp32, gloo. The tiny LLaVA part (_base_/tiny/llava_tiny_cpu.py,
# which the tiny MG-LLaVA configs build on too) with MMFuser (_base_/models/mmfuser_tiny.py).
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/llava_mmfuser_tiny_cpu_pretrain.py
from mmengine.config import read_base

with read_base():
    from .._base_.tiny.llava_tiny_cpu import *
    from .._base_.models.mmfuser_tiny import *
    from .._base_.derive import derive_settings

model.update(mmfuser_model)
del mmfuser_model  # now the model's
llava_dataset.allow_missing_boxes = True  # no object tokens: every image gets zero boxes

derive_settings(globals())  # every part that holds a setting above
