# LLaVA-1.5 + MMFuser stage 1 (pretrain) on the tiny CPU default: the 6-layer tiny CLIP's layers -6..-3 fused into
# -2 by MMFuser; no high-res branch, no object tokens; fp32, gloo. Otherwise mg_llava_tiny_cpu_pretrain.py.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/llava_mmfuser_tiny_cpu_pretrain.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.models.mmfuser_tiny import *

object_tokens = False
model.update(mmfuser_model, visual_encoder_aux=None, object_features=None)
high_res = low_res  # no high-res branch
for views in (image_views, llava_dataset.image_views, train_dataloader.dataset.image_views):
    views.update(high_res=high_res)
    views.image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path
model.data_preprocessor.high_res = high_res
image_processor = image_views.image_processor
for dataset in (llava_dataset, train_dataloader.dataset):
    dataset.update(box_file=None, allow_missing_boxes=True)  # no object tokens
    dataset.pop("max_boxes")
del (mmfuser_model, views, dataset, visual_encoder_aux_name, visual_encoder_aux_pretrained, object_roi_size, box_file,
     max_boxes, box_rule)
