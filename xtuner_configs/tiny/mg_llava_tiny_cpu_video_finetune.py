# MG-LLaVA video instruction tuning on the tiny CPU default (stage 2), the shape of the paper's video instruction
# tuning (encoders frozen, the LLM, the fusion and both projectors trained, from the video stage 1): the frame-order
# clips, each asked "Which photograph comes first in the video?" or "... last ..." (mg_llava/testing/
# frame_order_dataset.py; a model blind to the frames' order answers half of them). Clips only, to keep the CPU run
# short (the paper's stage also mixes image instructions). Otherwise mg_llava_tiny_cpu_finetune.py.
# After the video stage 1:  xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_video_finetune.py
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/mg_llava_tiny_cpu_video_pretrain"  # video stage 1's work dir: its last checkpoint
video_data_path = assets + "data/order_finetune.json"
video_folder = assets + "data/order_videos"
video_box_file = assets + "data/order_boxes.json"
num_frames = 2  # frames sampled per clip: the first and the last (the released models: 8)
encoder_chunk_size = 8  # images/frames per encoder call

model.update(encoder_chunk_size=encoder_chunk_size)
video_dataset = dict(llava_dataset, data_path=video_data_path, video_folder=video_folder, num_frames=num_frames,
                     box_file=video_box_file)
train_dataloader.dataset = video_dataset
# Shuffled batches: grouped by length, the clips whose answer is the same word would share batches (the answers
# differ in length, the rest of each sample does not), and each step would pull towards one answer (measured: held-out
# 0.42 after 152 iterations). Clips only, so no modality to group either.
train_dataloader.sampler = dict(type=DefaultSampler, shuffle=True)

batch_size = 8
max_epochs = 6  # 300 clips, batch 8: 38 iterations an epoch, 228 in all
# The real recipes: 2e-5 (Llama-3: 1e-5); a random tiny LLM needs more, but at 1e-2 the visual tokens' norm blew up
# to 1e5 (against ~0.25 for text) and the pair answered the held-out order questions at 0.75 (issue 26). At 3e-3 the
# visual tokens stay near 2-3 and the order is learnt after ~140-160 iterations (held-out first-token accuracy,
# in-process on this data, schedule over 200: 0.42 at 80, 0.79 at 120, 0.96 at 140, 1.00 from 160; xtuner train
# with this config: 24 / 24 held-out, 23 / 24 reversed)
lr = 3e-3
warmup_ratio = 0.02  # 3 iterations
save_steps = 228

derive_settings(globals())  # every part that holds a setting above
