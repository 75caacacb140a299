# MG-LLaVA stage 1 (pretrain) with Llama-3-8B-Instruct, on the shared recipe _base_/mg_llava_pretrain.py.
#   xtuner train xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_pretrain.py
#   python tools/slurm_train.py PARTITION mgllava_s1 xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_pretrain.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_pretrain import *
    from .._base_.llms.llama3_8b_instruct import *  # the LLM and its template
    from .._base_.derive import derive_settings

batch_size = 16  # per device
accumulative_counts = 2  # global batch 256 = 16 x 8 x 2

derive_settings(globals())  # every part that holds a setting above
