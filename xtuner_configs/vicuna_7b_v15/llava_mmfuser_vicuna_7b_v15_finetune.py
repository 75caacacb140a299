# LLaVA-1.5 + MMFuser stage 2 (instruction tuning) with Vicuna-7B v1.5, the MMFuser authors' recipe: starts from the
# stage-1 checkpoint (pretrained_pth) and trains the LLM (full), MMFuser and the projector; CLIP stays frozen.
# LLaVA-665K mix, lr 2e-5, DeepSpeed ZeRO-3, bf16, gradient checkpointing, length-grouped batches, global batch 128.
# Otherwise llava_mmfuser_vicuna_7b_v15_pretrain.py (the model and the dataset's settings).
#   xtuner train xtuner_configs/vicuna_7b_v15/llava_mmfuser_vicuna_7b_v15_finetune.py
from mmengine.config import read_base
from xtuner.dataset.samplers import LengthGroupedSampler

with read_base():
    from .llava_mmfuser_vicuna_7b_v15_pretrain import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/llava_mmfuser_vicuna_7b_v15_pretrain"  # stage 1's work dir: its last checkpoint
model.update(freeze_llm=False, use_activation_checkpointing=True)

lr = 2e-5
batch_size = 16  # per device
accumulative_counts = 1  # global batch 128 = 16 x 8 x 1
# DeepSpeed ZeRO-3 in bf16 (LLaVA-1.5's stage-2 setting)
strategy.config.zero_optimization = dict(stage=3, overlap_comm=True, stage3_gather_16bit_weights_on_model_save=True)

# Data: LLaVA-665K mix; no boxes
llava_mix_data_path = data_root + "LLaVA-Instruct-150K/llava_v1_5_mix665k.json"
llava_mix_image_folder = data_root + "llava_images"
train_dataloader.dataset.update(data_path=llava_mix_data_path, image_folder=llava_mix_image_folder)  # LLaVA-665K
train_dataloader.sampler = dict(
    type=LengthGroupedSampler,
    length_property="modality_length",
    per_device_batch_size=None,  # derived
)
del llava_pretrain_data_path, llava_pretrain_image_folder

derive_settings(globals())  # every part that holds a setting above
