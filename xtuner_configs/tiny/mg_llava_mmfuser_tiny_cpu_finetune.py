# MG-LLaVA + MMFuser stage 2 (instruction tuning) on the tiny CPU default: the LLM trains too; starts from stage 1.
# The model of mg_llava_mmfuser_tiny_cpu_pretrain.py on mg_llava_tiny_cpu_finetune.py's recipe.
# After stage 1:  xtuner train xtuner_configs/tiny/mg_llava_mmfuser_tiny_cpu_finetune.py
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.models.mmfuser_tiny import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/mg_llava_mmfuser_tiny_cpu_pretrain"  # stage 1's work dir: its last checkpoint
model.update(mmfuser_model)
model.fusion.high_res_fusion = dict(type=ConvGateFusion)  # MMFuser, then the Conv-Gate with the ConvNeXt map
object_roi_size = 7  # RoIAlign grid before averaging (released: 56)
del mmfuser_model

derive_settings(globals())  # every part that holds a setting above
