# MG-LLaVA ablation, stage 1 (pretrain), Vicuna-7B v1.5 on LLaVA-1.5's data (_base_/table5_pretrain.py).
# Table 5a, Channel Concat: low- and high-res features concatenated over channels.
#   xtuner train xtuner_configs/vicuna_7b_v15/table5/mg_llava_vicuna_7b_v15_channel_concat_pretrain.py
from mmengine.config import read_base

from mg_llava.model import ChannelConcatFusion

with read_base():
    from ..._base_.table5_pretrain import *
    from ..._base_.derive import derive_settings

fusion_type = ChannelConcatFusion

derive_settings(globals())  # every part that holds a setting above
