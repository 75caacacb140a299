# MG-LLaVA video instruction tuning with Vicuna-7B v1.5, QLoRA variant: a low-memory alternative to the paper's video
# recipe (mg_llava_vicuna_7b_v15_video_finetune.py, which trains the LLM in full; the paper never mentions QLoRA, and
# its MSVD-QA 71.5 / MSRVTT-QA 59.8 are the full recipe's). Data as the paper: LLaVA-665K image instructions +
# VideoInstruct-100K (Video-ChatGPT) videos, 8 frames per video (linspace), every frame with its own boxes, batches
# of one modality (image or video), length-grouped. Settings of XTuner's LLaVA QLoRA fine-tune: the LLM loaded in
# 4-bit NF4 (double quantisation, bf16 compute), LoRA on it with r=512, alpha=256, dropout 0.05, lr 2e-4, global
# batch 128, 1 epoch, warm-up 3 %, cosine; the LLM's own weights stay frozen; the fusion and both projectors train in
# full; CLIP and ConvNeXt frozen. Starts from the image stage-1 checkpoint (pretrained_pth; point it at the video
# stage 1, mg_llava_vicuna_7b_v15_video_pretrain.py, for the paper's data).
# Otherwise mg_llava_vicuna_7b_v15_finetune_qlora.py.
#   NPROC_PER_NODE=8 xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_video_finetune_qlora.py
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset, ModalityLengthGroupedSampler

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune_qlora import *
    from .._base_.derive import derive_settings

# VideoInstruct-100K in LLaVA format ("video" + "<video>"), boxes per frame from data_prep/generate_boxes.py
# --num-frames 8 on the same file
video_data_path = data_root + "VideoInstruct-100K/videochatgpt_llavaformat_100k.json"
video_folder = data_root + "VideoInstruct-100K/videos"
video_box_file = data_root + "boxes/videochatgpt_100k_boxes.json"
num_frames = 8  # SPEC 1.8: linspace(0, n - 1, 8)
encoder_chunk_size = 16  # images/frames per encoder call: bounds the ConvNeXt-L activations at 768 px
# Sequence budget (README, mg_llava/token_budget.py): a full-length video sample is 1471 text + 8 x (576 + 100 boxes)
# = 6879 tokens; Vicuna v1.5 was trained with 4096 positions, which 8 x 576 frame tokens alone pass. Remedy: linear
# RoPE scaling x2 (8192 positions; LLaVA-NeXT-Video's remedy for the same LLM), which the LoRA fine-tune adapts the
# LLM to (derive_settings puts it into model.llm.rope_scaling, so an export carries it in the LLM's config). The video
# source refuses, when it loads a sample, any sequence that would still pass the scaled positions: its max_positions
# (the LLM's trained positions x rope_factor) and image_tokens (the low-res grid, (low_res // patch_size) ** 2) are
# derived from the settings.
rope_factor = 2.0

model.llm_lora.r = 512
model.llm_lora.lora_alpha = 256
model.update(encoder_chunk_size=encoder_chunk_size)

train_dataloader.dataset.datasets = [
    train_dataloader.dataset.datasets[0],  # LLaVA-665K, as in stage 2
    dict(  # VideoInstruct-100K
        type=LLaVABoxDataset,
        data_path=video_data_path,
        image_folder=video_folder,
        video_folder=video_folder,
        num_frames=num_frames,
        box_file=video_box_file,
        max_positions=None,  # derived: the sequence check (8192 positions, 576 tokens a frame)
        image_tokens=None,
    ),
]
train_dataloader.sampler.type = ModalityLengthGroupedSampler  # length-grouped batches of one modality

lr = 2e-4  # LoRA

derive_settings(globals())  # every part that holds a setting above
