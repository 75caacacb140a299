# MG-LLaVA video instruction tuning with Vicuna-7B v1.5, the paper's video recipe (Section 4.1; MSVD-QA 71.5,
# MSRVTT-QA 59.8): LLaVA-665K image instructions + VideoInstruct-100K (Video-ChatGPT), 8 frames per video, from the
# video stage 1 (mg_llava_vicuna_7b_v15_video_pretrain.py). What trains is image stage 2's (Section 3.3): the LLM in
# full, the fusion and both projectors; CLIP and ConvNeXt frozen. lr 2e-5, global batch 128, DeepSpeed ZeRO-3, bf16,
# gradient checkpointing, length-grouped batches of one modality. Otherwise mg_llava_vicuna_7b_v15_finetune.py.
# Low-memory variant (not the paper's): mg_llava_vicuna_7b_v15_video_finetune_qlora.py.
#   NPROC_PER_NODE=8 xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_video_finetune.py
from mmengine.config import read_base

from mg_llava.dataset import LLaVABoxDataset, ModalityLengthGroupedSampler
from mg_llava.engine import ZeRO3TrainableWeightsHook

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_vicuna_7b_v15_video_pretrain"  # video stage 1's work dir: its last checkpoint
# VideoInstruct-100K in LLaVA format ("video" + "<video>"; from its question/answer file by
# data_prep/convert_videochatgpt.py, issue 24), boxes per frame from data_prep/generate_boxes.py --num-frames 8 on it
video_data_path = data_root + "VideoInstruct-100K/videochatgpt_llavaformat_100k.json"
video_folder = data_root + "VideoInstruct-100K/videos"
video_box_file = data_root + "boxes/videochatgpt_100k_boxes.json"
num_frames = 8  # SPEC 1.8: linspace(0, n - 1, 8)
encoder_chunk_size = 16  # images/frames per encoder call: bounds the ConvNeXt-L activations at 768 px
# 1471 text + 8 x (576 + 100) = 6879 tokens, past Vicuna v1.5's 4096 positions: linear RoPE scaling x2 (8192), which
# the full fine-tune adapts the LLM to (an export carries it in the LLM's config)
rope_factor = 2.0
# Memory (tools/memory_plan.py, worst case: every sample 6879 tokens): image stage 2's ZeRO-2 at micro-batch 16 is
# far past 80 GB; ZeRO-3 at micro-batch 8 x accumulation 2 is the plan's first fit on 8 x 80 GB (69.6 GB; ZeRO-2 at
# micro-batch 8: 83.5 GB)
batch_size = 8  # per device
accumulative_counts = 2  # global batch 128 = 8 x 8 x 2
strategy.config.zero_optimization = dict(stage=3, overlap_comm=True, stage3_gather_16bit_weights_on_model_save=True)
# ZeRO-3 keeps weights only as shards: also write the gathered trainable weights into each checkpoint folder (what
# tools/export.py and tools/chat.py read)
custom_hooks.append(dict(type=ZeRO3TrainableWeightsHook))

model.update(encoder_chunk_size=encoder_chunk_size)
train_dataloader.dataset.datasets = [
    train_dataloader.dataset.datasets[0],  # LLaVA-665K, as in image stage 2 (ALLaVA and the 25K are not used)
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

derive_settings(globals())  # every part that holds a setting above
