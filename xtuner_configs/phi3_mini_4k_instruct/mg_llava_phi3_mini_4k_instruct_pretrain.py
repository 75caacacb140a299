# MG-LLaVA stage 1 (pretrain) with Phi-3-mini-4k-instruct (3.8B), on the shared recipe _base_/mg_llava_pretrain.py.
#   xtuner train xtuner_configs/phi3_mini_4k_instruct/mg_llava_phi3_mini_4k_instruct_pretrain.py
#   python tools/slurm_train.py PARTITION mgllava_s1 xtuner_configs/phi3_mini_4k_instruct/mg_llava_phi3_mini_4k_instruct_pretrain.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_pretrain import *
    from .._base_.llms.phi3_mini_4k_instruct import *  # the LLM and its template
    from .._base_.derive import derive_settings

derive_settings(globals())  # every part that holds a setting above
