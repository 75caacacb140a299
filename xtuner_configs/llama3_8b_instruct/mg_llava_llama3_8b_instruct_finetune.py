# MG-LLaVA stage 2 (instruction tuning) with Llama-3-8B-Instruct, on the shared recipe _base_/mg_llava_finetune.py.
#   xtuner train xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_finetune.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_finetune.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_finetune import *
    from .._base_.llms.llama3_8b_instruct import *  # the LLM and its template
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_llama3_8b_instruct_pretrain"  # stage 1's work dir: its last checkpoint is loaded
lr = 1e-5
batch_size = 4  # per device
accumulative_counts = 4  # global batch 128 = 4 x 8 x 4

derive_settings(globals())  # every part that holds a setting above
