# MG-LLaVA video stage 1 (pretrain) on the tiny CPU default: the tiny image captions plus captions of short synthetic
# videos of real photographs (tools/build_tiny_assets.py), batches of one modality; the fusion and both projectors
# train, the LLM is frozen. Otherwise mg_llava_tiny_cpu_pretrain.py.
#   xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_video_pretrain.py
from mmengine.config import read_base

from mg_llava.dataset import ConcatLLaVABoxDataset, LLaVABoxDataset, ModalityLengthGroupedSampler

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.derive import derive_settings

video_data_path = assets + "data/video_pretrain.json"
video_folder = assets + "data/videos"
video_box_file = assets + "data/video_boxes.json"
num_frames = 2  # frames sampled per video: the first and the last (the released models: 8)
encoder_chunk_size = 8  # images/frames per encoder call

model.update(encoder_chunk_size=encoder_chunk_size)
train_dataloader.dataset = dict(llava_dataset, type=ConcatLLaVABoxDataset, datasets=[  # shared settings, two sources
    dict(type=LLaVABoxDataset, data_path=data_path, image_folder=image_folder, box_file=box_file),
    dict(type=LLaVABoxDataset, data_path=video_data_path, image_folder=image_folder, video_folder=video_folder,
         num_frames=num_frames, box_file=video_box_file),
])
train_dataloader.sampler = dict(type=ModalityLengthGroupedSampler, per_device_batch_size=None)  # derived

max_epochs = 5  # 8 image + 20 video captions, batch 4: 7 iterations an epoch
save_steps = 35

derive_settings(globals())  # every part that holds a setting above
