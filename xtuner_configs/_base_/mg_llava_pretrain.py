# MG-LLaVA stage 1 (pretrain), the recipe every backbone shares: trains the fusion and both projectors; CLIP, ConvNeXt
# and the LLM stay frozen. DeepSpeed ZeRO-2, bf16, lr 1e-3, global batch 256. Vicuna-7B v1.5 unless a config says
# otherwise. A config sets settings and ends with derive_settings(globals()).
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .datasets.llava_box_mixture import *
    from .default_runtime import *
    from .schedules.deepspeed_zero2_bf16 import *

# Data: LLaVA-Pretrain (558K LAION/CC/SBU captions) + ALLaVA captions (708K), with their box files; the images in the
# release's tree under data/ (data_prep/README.md). Or the release's one file for both: a config's one import line,
# `from .._base_.datasets.released_pretrain import *`.
llava_pretrain_data_path = data_root + "LLaVA-Pretrain/blip_laion_cc_sbu_558k.json"
llava_pretrain_image_folder = data_root + "LLaVA-Pretrain/images"
llava_pretrain_box_file = data_root + "boxes/blip_laion_cc_sbu_558k_boxes.json"
allava_caption_data_path = data_root + "ALLaVA/allava_caption_708k.json"  # data_prep/convert_allava.py
allava_caption_image_folder = data_root
allava_caption_box_file = data_root + "boxes/allava_caption_708k_boxes.json"

train_dataloader.dataset.datasets = [
    dict(  # LLaVA-Pretrain
        type=LLaVABoxDataset,
        data_path=llava_pretrain_data_path,
        image_folder=llava_pretrain_image_folder,
        box_file=llava_pretrain_box_file,
    ),
    dict(  # ALLaVA captions
        type=LLaVABoxDataset,
        data_path=allava_caption_data_path,
        image_folder=allava_caption_image_folder,
        box_file=allava_caption_box_file,
    ),
]
train_dataloader.sampler = dict(type=DefaultSampler, shuffle=True)
# The LLM is frozen, but the backward to the projectors still keeps its activations (16 h + 6 I bytes per token and
# layer): without checkpointing a per-device batch of 32 at 2147 tokens needs ~340 GB (tools/memory_plan.py).
model.update(use_activation_checkpointing=True)
