# MG-LLaVA video stage 1 (pretrain) on the tiny CPU default, the shape of the paper's video pretraining (image
# captions + video captions; the fusion and both projectors train, the encoders and the LLM are frozen): the tiny
# image captions plus captions of two-photograph clips, "First cat, then rocket." (the frame-order clips of
# mg_llava/testing/frame_order_dataset.py, written by tools/build_tiny_assets.py), batches of one modality.
# Otherwise mg_llava_tiny_cpu_pretrain.py.
#   xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_video_pretrain.py
from mmengine.config import read_base

from mg_llava.dataset import ConcatLLaVABoxDataset, LLaVABoxDataset, ModalityLengthGroupedSampler

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.derive import derive_settings

video_data_path = assets + "data/order_pretrain.json"
video_folder = assets + "data/order_videos"
video_box_file = assets + "data/order_boxes.json"
num_frames = 2  # frames sampled per clip: the first and the last (the released models: 8)
encoder_chunk_size = 8  # images/frames per encoder call

model.update(encoder_chunk_size=encoder_chunk_size)
train_dataloader.dataset = dict(llava_dataset, type=ConcatLLaVABoxDataset, datasets=[  # shared settings, two sources
    dict(type=LLaVABoxDataset, data_path=data_path, image_folder=image_folder, box_file=box_file),
    dict(type=LLaVABoxDataset, data_path=video_data_path, image_folder=image_folder, video_folder=video_folder,
         num_frames=num_frames, box_file=video_box_file),
])
train_dataloader.sampler = dict(type=ModalityLengthGroupedSampler, per_device_batch_size=None)  # derived

batch_size = 16
max_epochs = 1  # 8 image + 300 clip captions, batch 16: 20 iterations
# A frozen random tiny LLM gives stage 1 little to align to, and what it does learn hurts stage 2: at lr 1e-3 the
# stage-2 visual tokens grew to 108 x the text embeddings' norm and the reversed clips were answered 79 % right
# (without stage 1: ~15 x, 88 %). The image pair's 1e-2 took the norm to 588 here (issue 26).
lr = 1e-4
warmup_ratio = 0.1  # 2 iterations
save_steps = 20

derive_settings(globals())  # every part that holds a setting above
