# MG-LLaVA stage 2 with Vicuna-7B v1.5, QLoRA variant: the LLM loaded in 4-bit NF4 (bitsandbytes, needs a GPU) with
# LoRA adapters (rank 128). Otherwise mg_llava_vicuna_7b_v15_finetune_lora.py.
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune_qlora.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune_qlora.py --gpus 8
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune_lora import *
    from .._base_.derive import derive_settings

model.llm.quantization_config = dict(
    type=BitsAndBytesConfig,
    load_in_4bit=True,
    load_in_8bit=False,
    llm_int8_threshold=6.0,
    llm_int8_has_fp16_weight=False,
    bnb_4bit_compute_dtype=torch.bfloat16,
    bnb_4bit_use_double_quant=True,
    bnb_4bit_quant_type="nf4",
)

derive_settings(globals())  # every part that holds a setting above
