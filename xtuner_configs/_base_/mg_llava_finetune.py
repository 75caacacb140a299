# MG-LLaVA stage 2 (instruction tuning), the recipe every backbone shares: starts from the stage-1 checkpoint
# (pretrained_pth) and trains the LLM (full), the fusion and both projectors; CLIP and ConvNeXt stay frozen. DeepSpeed
# ZeRO-2, bf16, gradient checkpointing, length-grouped batches, lr 2e-5, global batch 128. Vicuna-7B v1.5 unless a
# config says otherwise. A config sets settings and ends with derive_settings(globals()).
from mmengine.config import read_base
from xtuner.dataset.samplers import LengthGroupedSampler

from mg_llava.dataset import LLaVABoxDataset

with read_base():
    from .datasets.llava_box_mixture import *
    from .default_runtime import *
    from .schedules.deepspeed_zero2_bf16 import *

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_pretrain"  # stage 1's work dir: its last checkpoint is loaded
model.update(freeze_llm=False, use_activation_checkpointing=True)

lr = 2e-5
batch_size = 16  # per device
accumulative_counts = 1  # global batch 128 = 16 x 8 x 1

# Data: LLaVA-665K mix + ALLaVA instructions (692K) + 25K (ShareGPT4V, DocVQA, DVQA, AI2D), with their box files. The
# images are the release's tree under data/ (coco/train2017, gqa/images, ..., allava_laion/images; data_prep/README.md),
# which every file's image paths start from. Or the release's one file for all of them: a config's one import line,
# `from .._base_.datasets.released_finetune import *`.
llava_mix_data_path = data_root + "LLaVA-Instruct-150K/llava_v1_5_mix665k.json"
llava_mix_image_folder = data_root
llava_mix_box_file = data_root + "boxes/llava_v1_5_mix665k_boxes.json"
allava_instruct_data_path = data_root + "ALLaVA/allava_instruct_692k.json"  # data_prep/convert_allava.py
allava_instruct_image_folder = data_root
allava_instruct_box_file = data_root + "boxes/allava_instruct_692k_boxes.json"
extra_data_path = data_root + "extra/sharegpt4v_docvqa_dvqa_ai2d_25k.json"
extra_image_folder = data_root
extra_box_file = data_root + "boxes/sharegpt4v_docvqa_dvqa_ai2d_25k_boxes.json"

train_dataloader.dataset.datasets = [
    dict(  # LLaVA-665K
        type=LLaVABoxDataset,
        data_path=llava_mix_data_path,
        image_folder=llava_mix_image_folder,
        box_file=llava_mix_box_file,
    ),
    dict(  # ALLaVA instructions
        type=LLaVABoxDataset,
        data_path=allava_instruct_data_path,
        image_folder=allava_instruct_image_folder,
        box_file=allava_instruct_box_file,
    ),
    dict(  # 25K extra
        type=LLaVABoxDataset,
        data_path=extra_data_path,
        image_folder=extra_image_folder,
        box_file=extra_box_file,
    ),
]
train_dataloader.sampler = dict(
    type=LengthGroupedSampler,
    length_property="modality_length",
    per_device_batch_size=None,  # derive_settings: batch_size x accumulative_counts, the samples of one step
)
