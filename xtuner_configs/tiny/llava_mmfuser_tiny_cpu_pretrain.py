# LLaVA-1.5 + MMFuser stage 1 (pretrain) on the tiny CPU default: the 6-layer tiny CLIP's layers -6..-3 fused into
# -2 by MMFuser; no high-res branch, no object tokens; fp32, gloo.
# Build the assets first:  python tools/build_tiny_assets.py work_dirs/tiny_assets
# Then:                    xtuner train xtuner_configs/tiny/llava_mmfuser_tiny_cpu_pretrain.py
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
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
# Model (paths relative to the working directory, as tools/build_tiny_assets.py writes them)
assets = "work_dirs/tiny_assets/"
llm_name_or_path = assets + "models/llm_vicuna"
visual_encoder_name_or_path = assets + "models/clip_deep"  # 6 layers
clip_layers = (-6, -5, -4, -3, -2)  # MMFuser's four shallow levels and the query layer, on the tiny CLIP
mmfuser_heads = 4  # 8 channels a head, as the tiny CLIP is 32 wide
low_res = 56  # 336
high_res = low_res  # no high-res branch

# Data
data_path = assets + "data/pretrain.json"
image_folder = assets + "data/images"
prompt_template = PROMPT_TEMPLATE.vicuna
max_length = 512

# Scheduler & Optimizer
batch_size = 4  # per device; global batch = batch_size x processes x accumulative_counts
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 10
optim_type = AdamW
lr = 1e-2  # the real recipes: 1e-3; the frozen LLM here is random, so the projectors need more
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.1  # of the iterations (the real recipes: 0.03; the tiny run needs at least one warm-up step)

# Save
save_steps = 10
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
    type=MGLLaVAModel,
    freeze_llm=True,
    use_activation_checkpointing=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path),
    visual_encoder=dict(
        type=CLIPVisionEncoder, pretrained_model_name_or_path=visual_encoder_name_or_path, select_layer=clip_layers
    ),
    visual_encoder_aux=None,
    fusion=dict(type=MultiLayerDeformableFusion, num_levels=len(clip_layers) - 1, num_heads=mmfuser_heads),
    object_features=None,
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
image_views = dict(type=ImageViews, image_processor=image_processor, high_res=high_res, low_res=low_res)

llava_dataset = dict(
    type=LLaVABoxDataset,
    data_path=data_path,
    image_folder=image_folder,
    box_file=None,
    allow_missing_boxes=True,  # no object tokens
    tokenizer=tokenizer,
    image_views=image_views,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    num_proc=1,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=llava_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
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
