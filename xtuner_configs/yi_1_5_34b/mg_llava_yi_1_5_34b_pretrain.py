# MG-LLaVA stage 1 (pretrain) with Yi-1.5-34B (ChatML template), on the shared recipe _base_/mg_llava_pretrain.py.
#   xtuner train xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_pretrain.py
#   python tools/slurm_train.py PARTITION mgllava_s1 xtuner_configs/yi_1_5_34b/mg_llava_yi_1_5_34b_pretrain.py --gpus 32
from mmengine.config import read_base

from mg_llava.engine import ZeRO3TrainableWeightsHook

with read_base():
    from .._base_.mg_llava_pretrain import *
    from .._base_.llms.yi_1_5_34b import *  # the LLM and its template
    from .._base_.derive import derive_settings

num_gpus = 32
strategy.config.zero_optimization = dict(stage=3, overlap_comm=True, stage3_gather_16bit_weights_on_model_save=True)
# ZeRO-3 keeps weights only as shards: also write the gathered trainable weights into each checkpoint folder (what
# stage 2's pretrained_pth, tools/export.py and tools/chat.py read)
custom_hooks.append(dict(type=ZeRO3TrainableWeightsHook))
# the released run used 16 per device (global 512); 8 keeps the paper's global 256
batch_size = 8  # per device
accumulative_counts = 1  # global batch 256 = 8 x 32 x 1

derive_settings(globals())  # every part that holds a setting above
