# LLaVA-1.5 + MMFuser stage 1 (pretrain) with Vicuna-7B v1.5, the MMFuser authors' recipe: CLIP ViT-L/14-336 only,
# its layers -22/-17/-12/-7 fused into layer -2 by deformable attention (MultiLayerDeformableFusion), the usual
# 2-layer MLP projector; no high-res branch, no object tokens. Trains MMFuser and the projector; CLIP and the LLM stay
# frozen. LLaVA-Pretrain 558K; otherwise mg_llava_vicuna_7b_v15_pretrain.py (lr 1e-3, DeepSpeed ZeRO-2, bf16, global
# batch 256).
#   xtuner train xtuner_configs/vicuna_7b_v15/llava_mmfuser_vicuna_7b_v15_pretrain.py
from mmengine.config import read_base
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .mg_llava_vicuna_7b_v15_pretrain import *
    from .._base_.models.mmfuser import *
    from .._base_.derive import derive_settings

high_res = low_res  # no high-res branch: the padded square is resized to 336 once (LLaVA-1.5's view)
object_tokens = False
model.visual_encoder.select_layer = clip_layers
model.update(visual_encoder_aux=None, fusion=mmfuser_fusion)

# Data: LLaVA-Pretrain (558K LAION/CC/SBU captions); no boxes
train_dataloader.dataset = dict(  # LLaVA-Pretrain; the tokenizer, views, template and lengths are derived
    type=LLaVABoxDataset,
    data_path=llava_pretrain_data_path,
    image_folder=llava_pretrain_image_folder,
    box_file=None,
    allow_missing_boxes=True,  # no object tokens: every image gets zero boxes (logged once, with the count)
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory),
)
# MG-LLaVA's settings that this model does not have
del (mmfuser_fusion, visual_encoder_aux_name, visual_encoder_aux_pretrained, object_roi_size, max_boxes, box_rule,
     box_cache_dir, llava_pretrain_box_file, allava_caption_data_path, allava_caption_image_folder, allava_caption_box_file)

derive_settings(globals())  # every part that holds a setting above
