# MG-LLaVA stage 2 (instruction tuning) with Vicuna-7B v1.5, on the shared recipe _base_/mg_llava_finetune.py.
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_finetune import *
    from .._base_.derive import derive_settings

derive_settings(globals())  # every part that holds a setting above
