# AVG-LLaVA stage 4 (RGLF, ranking-based granularity learning from LLM feedback) on the tiny CPU default: everything
# but the router is frozen; a no-grad LLM pass per granularity ranks them by each sample's loss and the router learns
# that ranking (0.1 x cross-entropy on the best + pairwise ranking loss, margin 1.0 x loss gap), lr 1e-3.
# After stage 3:  xtuner train xtuner_configs/tiny/avg_llava_tiny_cpu_rglf.py
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.dataset.samplers import LengthGroupedSampler
from xtuner.engine.runner import TrainLoop

from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews, LLaVABoxDataset, llava_box_collate_fn
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
# Model (paths relative to the working directory, as tools/build_tiny_assets.py writes them)
assets = "work_dirs/tiny_assets/"
llm_name_or_path = assets + "models/llm_vicuna"
visual_encoder_name_or_path = assets + "models/clip"
visual_encoder_aux_name = "local-dir:" + assets + "models/convnext"
visual_encoder_aux_pretrained = None  # the local-dir folder holds the weights
pretrained_pth = "work_dirs/avg_llava_tiny_cpu_multi_granularity/iter_90.pth"  # stage 3's last checkpoint
high_res = 128  # 768 for the released models
low_res = 56  # 336
object_roi_size = 7  # RoIAlign grid before averaging; the released models use 56, which costs CPU time here
granularity_pools = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))  # (rows, cols) averaged: 16, 8, 4, 2, 1 tokens
router_instruction_tokens = 32

# Data
data_path = assets + "data/finetune.json"
image_folder = assets + "data/images"
box_file = assets + "data/boxes.json"
prompt_template = PROMPT_TEMPLATE.vicuna
max_length = 512
max_boxes = 100

# Scheduler & Optimizer
batch_size = 4  # per device; global batch = batch_size x processes x accumulative_counts
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 10
optim_type = AdamW
lr = 1e-3  # as AVG-LLaVA's RGLF
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.1  # of the iterations (the real recipes: 0.03; the tiny run needs at least one warm-up step)

# Save
save_steps = 100
save_total_limit = -1

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
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
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path),
    visual_encoder=dict(type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path),
    visual_encoder_aux=dict(
        type=OpenCLIPConvNeXtEncoder, model_name=visual_encoder_aux_name, pretrained=visual_encoder_aux_pretrained
    ),
    fusion=dict(type=ConvGateFusion),
    object_features=dict(type=MultiScaleRoIFeatures, output_size=object_roi_size),
    scaler=dict(type=VisualGranularityScaler, pools=granularity_pools),
    router=dict(type=VisualGranularityRouter, num_instruction_tokens=router_instruction_tokens, num_heads=8),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
llava_dataset = dict(
    type=LLaVABoxDataset,
    data_path=data_path,
    image_folder=image_folder,
    box_file=box_file,
    tokenizer=tokenizer,
    image_views=dict(type=ImageViews, image_processor=image_processor, high_res=high_res, low_res=low_res),
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    max_boxes=max_boxes,
    num_proc=1,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=llava_dataset,
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
# fp32 on CPU: mmengine's AmpOptimWrapper needs a GPU.
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

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
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=1),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)

# Multi-process on CPU: DDP without device ids (mmengine's default names the GPU of LOCAL_RANK).
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
log_processor = dict(by_epoch=False, window_size=1)  # log each iteration's own loss
