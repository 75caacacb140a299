# LLaVA-1.5 + MMFuser stage 1 (pretrain) with Vicuna-7B v1.5, the MMFuser authors' recipe: CLIP ViT-L/14-336 only,
# its layers -22/-17/-12/-7 fused into layer -2 by deformable attention (MultiLayerDeformableFusion), the usual
# 2-layer MLP projector; no high-res branch, no object tokens. Trains MMFuser and the projector; CLIP and the LLM stay
# frozen. LLaVA-Pretrain 558K, lr 1e-3, DeepSpeed ZeRO-2, bf16, global batch 256.
#   xtuner train xtuner_configs/vicuna_7b_v15/llava_mmfuser_vicuna_7b_v15_pretrain.py
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR
from mmengine.runner import FlexibleRunner
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.engine import DeepSpeedStrategy
from xtuner.engine.runner import TrainLoop

from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews, LLaVABoxDataset, llava_box_collate_fn
from mg_llava.model import CLIPVisionEncoder, MGLLaVAModel, MultiLayerDeformableFusion

# mmengine parses this file in lazy-import mode: the imports above load nothing until an object is built. Importing
# mg_llava now applies its compatibility patches (mg_llava/compat.py) before XTuner reads a --resume checkpoint and
# before torch.distributed starts.
__import__("mg_llava")

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = "lmsys/vicuna-7b-v1.5"
visual_encoder_name_or_path = "openai/clip-vit-large-patch14-336"
clip_layers = (-22, -17, -12, -7, -2)  # MMFuser: four shallow levels, then the query layer (LLaVA-1.5's -2)
mmfuser_heads = 16
mmfuser_points = 4
low_res = 336
high_res = low_res  # no high-res branch: the padded square is resized to 336 once (LLaVA-1.5's view)

# Data: LLaVA-Pretrain (558K LAION/CC/SBU captions); no boxes
data_root = "./data/"
llava_pretrain_data_path = data_root + "LLaVA-Pretrain/blip_laion_cc_sbu_558k.json"
llava_pretrain_image_folder = data_root + "LLaVA-Pretrain/images"
prompt_template = PROMPT_TEMPLATE.vicuna
max_length = int(2048 - (336 / 14) ** 2)  # text tokens; the 576 image tokens come on top

# Scheduler & Optimizer
num_gpus = 8
batch_size = 32  # per device
accumulative_counts = 1  # global batch 256 = 32 x 8 x 1
dataloader_num_workers = 4
max_epochs = 1
optim_type = AdamW
lr = 1e-3
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 500
save_total_limit = 2  # -1 keeps all

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=False,
    padding_side="right",
)

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
)

model = dict(
    type=MGLLaVAModel,
    freeze_llm=True,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        torch_dtype=torch.bfloat16,
    ),
    visual_encoder=dict(
        type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path, select_layer=clip_layers
    ),
    visual_encoder_aux=None,
    fusion=dict(
        type=MultiLayerDeformableFusion,
        num_levels=len(clip_layers) - 1,
        num_heads=mmfuser_heads,
        num_points=mmfuser_points,
    ),
    object_features=None,
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
image_views = dict(type=ImageViews, image_processor=image_processor, high_res=high_res, low_res=low_res)

train_dataset = dict(  # LLaVA-Pretrain
    type=LLaVABoxDataset,
    data_path=llava_pretrain_data_path,
    image_folder=llava_pretrain_image_folder,
    box_file=None,
    allow_missing_boxes=True,  # no object tokens: every image gets zero boxes (logged once, with the count)
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    persistent_workers=True,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=llava_box_collate_fn),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
# DeepSpeed ZeRO-2 in bf16, carried by the config (no --deepspeed flag needed; xtuner train sees it).
strategy = dict(
    type=DeepSpeedStrategy,
    config=dict(
        zero_optimization=dict(stage=2, overlap_comm=True),
        bf16=dict(enabled=True),
        zero_allow_untested_optimizer=True,
        zero_force_ds_cpu_optimizer=False,
    ),
    gradient_accumulation_steps=accumulative_counts,
    train_micro_batch_size_per_gpu=batch_size,
    gradient_clipping=max_norm,
    exclude_frozen_parameters=True,
)
optim_wrapper = dict(
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
)
runner_type = FlexibleRunner

param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True,
    ),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
        end=max_epochs,
        convert_to_iter_based=True,
    ),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
log_processor = dict(by_epoch=False)
