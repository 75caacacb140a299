# MG-LLaVA stage 2 with Vicuna-7B v1.5, continued from the released stage-2 checkpoint: the released file is the
# starting point (pretrained_pth, read by the safe loader) and the boxes go through the released box rule, so the
# model keeps seeing the box distribution it was trained on. Otherwise mg_llava_vicuna_7b_v15_finetune.py.
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune_released.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *
    from .._base_.derive import derive_settings

pretrained_pth = "./pretrained/mg_llava_vicuna7b_finetune.pth"  # the released file: adjust
box_rule = "released"  # the training data and the sample answers during training

derive_settings(globals())  # every part that holds a setting above
