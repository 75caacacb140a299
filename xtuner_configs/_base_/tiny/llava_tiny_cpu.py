# LLaVA's model part (models/llava_vicuna_7b.py, one view, no object tokens) on the tiny CPU default: tiny models and
# the bundled photo dataset, fp32, gloo; the shared dataset, schedule and runtime parts with the tiny sizes, paths and
# CPU settings. The tiny LLaVA-MMFuser configs build on it; the tiny MG-LLaVA configs add MG-LLaVA's branches
# (models/mg_llava_branches.py) and their box file. A config ends with derive_settings(globals()).
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from mmengine.optim import OptimWrapper

from mg_llava.dataset import llava_box_collate_fn

with read_base():
    from ..datasets.llava_dataset import *
    from ..default_runtime import *
    from ..schedules.adamw_warmup_cosine import *

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model (paths relative to the working directory, as tools/build_tiny_assets.py writes them)
assets = "work_dirs/tiny_assets/"
llm_name_or_path = assets + "models/llm_vicuna"
visual_encoder_name_or_path = assets + "models/clip"
low_res = 56  # 336
high_res = low_res  # one view (MG-LLaVA's high-res view: 128 here, 768 for the released models)

# Data
data_path = assets + "data/pretrain.json"
image_folder = assets + "data/images"
box_file = None  # no object tokens, no boxes (the tiny MG-LLaVA configs: the bundled box file)
context_length = 512 + 16  # 512 text tokens and the low-res view's 4 x 4 grid
resize_on_device = False  # the CPU is the device here, and Pillow resizes faster on it

# Scheduler & Optimizer
batch_size = 4  # per device; global batch = batch_size x processes x accumulative_counts
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 10
lr = 1e-2  # the real recipes: 1e-3; the frozen LLM here is random, so the projectors need more
warmup_ratio = 0.1  # of the iterations (the real recipes: 0.03; the tiny run needs at least one warm-up step)

# Save and sample answers (the shipped photo at the tiny views)
save_steps = 10
save_total_limit = -1
evaluation_freq = 10

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
# The shared parts (derive_settings points them at the settings above); the LLM stays in fp32 on CPU.
model.llm.pop("torch_dtype")

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
llava_dataset.update(num_proc=1)  # the loader's dataset; data_path, image_folder and box_file are derived into it

train_dataloader = dict(
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
)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
default_hooks.logger.interval = 1
env_cfg.dist_cfg.backend = "gloo"
# Multi-process on CPU: DDP without device ids (mmengine's default names the GPU of LOCAL_RANK).
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
log_processor.window_size = 1  # log each iteration's own loss
custom_hooks[0].max_new_tokens = 16
