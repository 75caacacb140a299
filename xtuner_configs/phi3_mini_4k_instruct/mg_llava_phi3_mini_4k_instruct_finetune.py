# MG-LLaVA stage 2 (instruction tuning) with Phi-3-mini-4k-instruct (3.8B), on the shared recipe _base_/mg_llava_finetune.py.
#   xtuner train xtuner_configs/phi3_mini_4k_instruct/mg_llava_phi3_mini_4k_instruct_finetune.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/phi3_mini_4k_instruct/mg_llava_phi3_mini_4k_instruct_finetune.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_finetune import *
    from .._base_.llms.phi3_mini_4k_instruct import *  # the LLM and its template
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/mg_llava_phi3_mini_4k_instruct_pretrain"  # stage 1's work dir: its last checkpoint is loaded

batch_size = 8  # per device
accumulative_counts = 2  # global batch 128 = 8 x 8 x 2

derive_settings(globals())  # every part that holds a setting above
