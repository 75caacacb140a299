# MG-LLaVA + MMFuser stage 2 (instruction tuning) on the tiny CPU default: the LLM trains too; starts from stage 1.
# The model of mg_llava_mmfuser_tiny_cpu_pretrain.py on mg_llava_tiny_cpu_finetune.py's recipe.
# After stage 1:  xtuner train xtuner_configs/tiny/mg_llava_mmfuser_tiny_cpu_finetune.py
from mmengine.config import read_base

from mg_llava.model import ConvGateFusion

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.models.mmfuser_tiny import *

pretrained_pth = "work_dirs/mg_llava_mmfuser_tiny_cpu_pretrain/iter_20.pth"  # stage 1's last checkpoint
model.update(mmfuser_model, pretrained_pth=pretrained_pth)
model.fusion.high_res_fusion = dict(type=ConvGateFusion)  # MMFuser, then the Conv-Gate with the ConvNeXt map
for views in (image_views, llava_dataset.image_views, train_dataloader.dataset.image_views):
    views.image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path
image_processor = image_views.image_processor
model.object_features.output_size = object_roi_size = 7  # RoIAlign grid before averaging (released: 56)
del mmfuser_model, views
