# MG-LLaVA ablation, stage 1 (pretrain), Vicuna-7B v1.5 on LLaVA-1.5's data (_base_/table5_pretrain.py).
# the reference row: Conv-Gate fusion, object tokens appended, RAM++ tags (the paper's model).
#   xtuner train xtuner_configs/vicuna_7b_v15/table5/mg_llava_vicuna_7b_v15_conv_gate_pretrain.py
from mmengine.config import read_base

with read_base():
    from ..._base_.table5_pretrain import *
    from ..._base_.derive import derive_settings


derive_settings(globals())  # every part that holds a setting above
