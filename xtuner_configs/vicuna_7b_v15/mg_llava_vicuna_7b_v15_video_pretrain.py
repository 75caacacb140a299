# MG-LLaVA video stage 1 (pretrain) with Vicuna-7B v1.5, the paper's video recipe (Section 4.1, following
# Video-LLaVA): LLaVA-Pretrain's 558K image captions + Video-LLaVA's 703K video captions, 8 frames per video
# (linspace), every frame with its own boxes, batches of one modality. What trains is image stage 1's (Section 3.3):
# the fusion and both projectors; CLIP, ConvNeXt and the LLM are frozen. lr 1e-3, global batch 256, ZeRO-2, bf16.
# Otherwise mg_llava_vicuna_7b_v15_pretrain.py. Stage 2: mg_llava_vicuna_7b_v15_video_finetune.py.
#   NPROC_PER_NODE=8 xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_video_pretrain.py
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset, ModalityLengthGroupedSampler

with read_base():
    from .mg_llava_vicuna_7b_v15_pretrain import *
    from .._base_.derive import derive_settings

# Video-LLaVA's video captions (Valley, 703K) in LLaVA format ("video" + "<video>"; from its train_json/valley_.json by
# data_prep/convert_video_llava.py, issue 24), boxes per frame from data_prep/generate_boxes.py --num-frames 8 on it
video_caption_data_path = data_root + "Video-LLaVA/valley_703k.json"
video_caption_folder = data_root + "Video-LLaVA/videos"
video_caption_box_file = data_root + "boxes/valley_703k_boxes.json"
num_frames = 8  # SPEC 1.8: linspace(0, n - 1, 8)
encoder_chunk_size = 16  # images/frames per encoder call: bounds the ConvNeXt-L activations at 768 px
# A caption sample is short, but the sequence check admits up to 1471 text + 8 x (576 + 100) = 6879 tokens, past
# Vicuna v1.5's 4096 trained positions: linear RoPE scaling x2 as in the video fine-tune (the frozen LLM reads the
# scaled positions here too, so both stages see the same position encoding)
rope_factor = 2.0
# Memory (tools/memory_plan.py, worst case: every sample 6879 tokens): image stage 1's micro-batch 32 needs 209 GB;
# micro-batch 8 x accumulation 4 fits 8 x 80 GB at ZeRO-2 (64.9 GB)
batch_size = 8  # per device
accumulative_counts = 4  # global batch 256 = 8 x 8 x 4

model.update(encoder_chunk_size=encoder_chunk_size)
train_dataloader.dataset.datasets = [
    train_dataloader.dataset.datasets[0],  # LLaVA-Pretrain 558K, as in image stage 1 (ALLaVA's captions are not used)
    dict(  # Video-LLaVA's video captions
        type=LLaVABoxDataset,
        data_path=video_caption_data_path,
        image_folder=video_caption_folder,
        video_folder=video_caption_folder,
        num_frames=num_frames,
        box_file=video_caption_box_file,
        max_positions=None,  # derived: the sequence check (8192 positions, 576 tokens a frame)
        image_tokens=None,
    ),
]
train_dataloader.sampler = dict(type=ModalityLengthGroupedSampler, length_property="modality_length",
                                per_device_batch_size=None)  # derived: batches of one modality

derive_settings(globals())  # every part that holds a setting above
