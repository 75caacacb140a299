# AVG-LLaVA stage 4 (RGLF) on MG-LLaVA Vicuna-7B v1.5: starts from stage 3; everything but the router is frozen. Each
# step runs the LLM without gradient once per granularity, ranks the granularities by each sample's loss, and trains
# the router on 0.1 x cross-entropy towards the best + a pairwise ranking loss (margin 1.0 x loss gap), lr 1e-3.
# Checkpoints hold the router and every weight stage 3 trained: one file deploys.
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_rglf.py
import torch
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR
from mmengine.runner import FlexibleRunner
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.dataset.samplers import LengthGroupedSampler
from xtuner.engine import DeepSpeedStrategy
from xtuner.engine.runner import TrainLoop

from mg_llava.dataset import PROMPT_TEMPLATE, ConcatLLaVABoxDataset, ImageViews, LLaVABoxDataset, llava_box_collate_fn
from mg_llava.model import (
    AVGLLaVAModel,
    CLIPVisionEncoder,
    ConvGateFusion,
    MultiScaleRoIFeatures,
    OpenCLIPConvNeXtEncoder,
    VisualGranularityRouter,
    VisualGranularityScaler,
)

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
# open_clip ConvNeXt-L (LAION-2B ft-soup): the folder of open_clip_pytorch_model.bin from
# laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup ("local-dir:<folder>" also works as the model name)
visual_encoder_aux_name = "convnext_large_d_320"
visual_encoder_aux_pretrained = "./pretrained/convnext_large_d_320/open_clip_pytorch_model.bin"
pretrained_pth = "./work_dirs/avg_llava_vicuna_7b_v15_multi_granularity/iter_10808.pth"  # stage 3: adjust
high_res = 768
low_res = 336
object_roi_size = 56  # RoIAlign output grid before averaging (the released weights were trained with 56)
granularity_pools = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))  # (rows, cols) averaged: 576, 288, 144, 72, 36
router_instruction_tokens = 32  # instruction tokens the router reads (most similar to the image)
rglf_ce_weight = 0.1
rglf_margin = 1.0

# Data: LLaVA-665K mix + ALLaVA instructions (692K) + 25K (ShareGPT4V, DocVQA, DVQA, AI2D), with their box files
data_root = "./data/"
llava_mix_data_path = data_root + "LLaVA-Instruct-150K/llava_v1_5_mix665k.json"
llava_mix_image_folder = data_root + "llava_images"
llava_mix_box_file = data_root + "boxes/llava_v1_5_mix665k_boxes.json"
allava_instruct_data_path = data_root + "ALLaVA/allava_instruct_692k.json"
allava_instruct_image_folder = data_root + "ALLaVA/images"
allava_instruct_box_file = data_root + "boxes/allava_instruct_692k_boxes.json"
extra_data_path = data_root + "extra/sharegpt4v_docvqa_dvqa_ai2d_25k.json"
extra_image_folder = data_root + "extra/images"
extra_box_file = data_root + "boxes/sharegpt4v_docvqa_dvqa_ai2d_25k_boxes.json"
prompt_template = PROMPT_TEMPLATE.vicuna
max_length = int(2048 - (336 / 14) ** 2)  # text tokens; the 576 image and the box tokens come on top
max_boxes = 100
box_cache_dir = data_root + "boxes/cache"  # parsed box files as memory-mapped arrays, shared by every rank

# Scheduler & Optimizer
num_gpus = 8
batch_size = 16  # per device
accumulative_counts = 1  # global batch 128 = 16 x 8 x 1
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
    type=AVGLLaVAModel,
    stage="rglf",
    freeze_llm=True,
    pretrained_pth=pretrained_pth,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        torch_dtype=torch.bfloat16,
    ),
    visual_encoder=dict(type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path),
    visual_encoder_aux=dict(
        type=OpenCLIPConvNeXtEncoder, model_name=visual_encoder_aux_name, pretrained=visual_encoder_aux_pretrained
    ),
    fusion=dict(type=ConvGateFusion),
    object_features=dict(type=MultiScaleRoIFeatures, output_size=object_roi_size),
    scaler=dict(type=VisualGranularityScaler, pools=granularity_pools),
    router=dict(type=VisualGranularityRouter, num_instruction_tokens=router_instruction_tokens, num_heads=8),
    rglf_ce_weight=rglf_ce_weight,
    rglf_margin=rglf_margin,
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
image_views = dict(type=ImageViews, image_processor=image_processor, high_res=high_res, low_res=low_res)

llava_mix_dataset = dict(  # LLaVA-665K
    type=LLaVABoxDataset,
    data_path=llava_mix_data_path,
    image_folder=llava_mix_image_folder,
    box_file=llava_mix_box_file,
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    max_boxes=max_boxes,
    box_cache_dir=box_cache_dir,
)

allava_instruct_dataset = dict(  # ALLaVA instructions
    type=LLaVABoxDataset,
    data_path=allava_instruct_data_path,
    image_folder=allava_instruct_image_folder,
    box_file=allava_instruct_box_file,
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    max_boxes=max_boxes,
    box_cache_dir=box_cache_dir,
)

extra_dataset = dict(  # 25K extra
    type=LLaVABoxDataset,
    data_path=extra_data_path,
    image_folder=extra_image_folder,
    box_file=extra_box_file,
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    max_boxes=max_boxes,
    box_cache_dir=box_cache_dir,
)

train_dataset = dict(type=ConcatLLaVABoxDataset, datasets=[llava_mix_dataset, allava_instruct_dataset, extra_dataset])

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    persistent_workers=True,
    dataset=train_dataset,
    sampler=dict(
        type=LengthGroupedSampler,
        length_property="modality_length",
        per_device_batch_size=batch_size * accumulative_counts,
    ),
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
    exclude_frozen_parameters=False,  # the model's state_dict decides: router + stage-3 weights
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
