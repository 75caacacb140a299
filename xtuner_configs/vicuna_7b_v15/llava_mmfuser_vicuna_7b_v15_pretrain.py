# LLaVA-1.5 + MMFuser stage 1 (pretrain) with Vicuna-7B v1.5, the MMFuser authors' recipe: CLIP ViT-L/14-336 only,
# its layers -22/-17/-12/-7 fused into layer -2 by deformable attention (MultiLayerDeformableFusion), the usual
# 2-layer MLP projector; no high-res branch, no object tokens. Trains MMFuser and the projector; CLIP and the LLM stay
# frozen. LLaVA-Pretrain 558K; lr 1e-3, DeepSpeed ZeRO-2, bf16, global batch 256 (the shared parts' stage-1
# settings, as MG-LLaVA's stage 1).
#   xtuner train xtuner_configs/vicuna_7b_v15/llava_mmfuser_vicuna_7b_v15_pretrain.py
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler

with read_base():
    from .._base_.datasets.llava_loader import *  # LLaVA's model part (CLIP, one 336 px view) and its dataset
    from .._base_.models.mmfuser import *
    from .._base_.default_runtime import *
    from .._base_.schedules.deepspeed_zero2_bf16 import *
    from .._base_.derive import derive_settings

model.visual_encoder.select_layer = clip_layers
model.fusion = mmfuser_fusion
model.update(use_activation_checkpointing=True)  # frozen LLM, but the backward keeps its activations (memory_plan.py)
del mmfuser_fusion

# Data: LLaVA-Pretrain (558K LAION/CC/SBU captions); no boxes
llava_pretrain_data_path = data_root + "LLaVA-Pretrain/blip_laion_cc_sbu_558k.json"
llava_pretrain_image_folder = data_root + "LLaVA-Pretrain/images"
train_dataloader.dataset.update(  # LLaVA-Pretrain
    data_path=llava_pretrain_data_path,
    image_folder=llava_pretrain_image_folder,
    box_file=None,
    allow_missing_boxes=True,  # no object tokens: every image gets zero boxes (logged once, with the count)
)
train_dataloader.sampler = dict(type=DefaultSampler, shuffle=True)

derive_settings(globals())  # every part that holds a setting above
