# MG-LLaVA stage 1 (pretrain) on the tiny CPU default: tiny models and the bundled photo dataset, fp32, gloo. The tiny
# LLaVA part (_base_/tiny/llava_tiny_cpu.py: sizes, paths, CPU settings) with MG-LLaVA's branches
# (_base_/models/mg_llava_branches.py: the tiny ConvNeXt's high-res view, Conv-Gate, object tokens) and its boxes.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_pretrain.py
from mmengine.config import read_base

with read_base():
    from .._base_.tiny.llava_tiny_cpu import *
    from .._base_.models.mg_llava_branches import *
    from .._base_.derive import derive_settings

visual_encoder_aux_name = "local-dir:" + assets + "models/convnext"
visual_encoder_aux_pretrained = None  # the local-dir folder holds the weights
high_res = 128  # 768 for the released models
box_file = assets + "data/boxes.json"

model.update(mg_llava_branches)  # LLaVA's model with the high-res branch, fusion and object tokens
del mg_llava_branches  # now the model's

derive_settings(globals())  # every part that holds a setting above
