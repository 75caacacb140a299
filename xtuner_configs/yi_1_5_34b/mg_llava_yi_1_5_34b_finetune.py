# MG-LLaVA stage 2 (instruction tuning) with Yi-1.5-34B (ChatML template), on the shared recipe _base_/mg_llava_finetune.py.
#   xtuner train xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_finetune.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_finetune.py --gpus 32
from mmengine.config import read_base

from mg_llava.engine import ZeRO3TrainableWeightsHook

with read_base():
    from .._base_.mg_llava_finetune import *
    from .._base_.llms.yi_1_5_34b import *  # the LLM and its template
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_yi_1_5_34b_pretrain"  # stage 1's work dir: its last checkpoint is loaded

num_gpus = 32
strategy.config.zero_optimization = dict(stage=3, overlap_comm=True, stage3_gather_16bit_weights_on_model_save=True)
# ZeRO-3 keeps weights only as shards: also write the gathered trainable weights into each checkpoint folder (what
# stage 2's pretrained_pth, tools/export.py and tools/chat.py read)
custom_hooks.append(dict(type=ZeRO3TrainableWeightsHook))
batch_size = 4  # per device
accumulative_counts = 1  # global batch 128 = 4 x 32 x 1

derive_settings(globals())  # every part that holds a setting above
