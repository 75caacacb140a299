# MG-LLaVA video instruction tuning on the tiny CPU default (stage 2): short synthetic videos of real photographs, a
# pan and zoom over one photograph cut to another, asked "What is shown at the end of the video?" (a cat or a clock:
# the last frame's photograph; some videos start on the other one). Videos only, to keep the CPU run short (the video
# stage 1 mixes image and video captions). The LLM trains too. Otherwise mg_llava_tiny_cpu_finetune.py.
# After the video stage 1:  xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_video_finetune.py
from mmengine.config import read_base

from mg_llava.dataset import ModalityLengthGroupedSampler

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/mg_llava_tiny_cpu_video_pretrain"  # video stage 1's work dir: its last checkpoint
video_data_path = assets + "data/video_finetune.json"
video_folder = assets + "data/videos"
video_box_file = assets + "data/video_boxes.json"
num_frames = 2  # frames sampled per video: the first and the last (the released models: 8)
encoder_chunk_size = 8  # images/frames per encoder call

model.update(encoder_chunk_size=encoder_chunk_size)
video_dataset = dict(llava_dataset, data_path=video_data_path, video_folder=video_folder, num_frames=num_frames,
                     box_file=video_box_file)
train_dataloader.dataset = video_dataset
train_dataloader.sampler = dict(type=ModalityLengthGroupedSampler, length_property="modality_length",
                                per_device_batch_size=None)  # derived

max_epochs = 8  # 20 video samples, batch 4: 5 iterations an epoch
lr = 1e-2  # the real recipes: 2e-5 (Llama-3: 1e-5); a random tiny LLM needs more
warmup_ratio = 0.05  # 2 iterations (one would keep the warm-up's start lr: mmengine's LinearLR ends before it rises)
save_steps = 40

derive_settings(globals())  # every part that holds a setting above
