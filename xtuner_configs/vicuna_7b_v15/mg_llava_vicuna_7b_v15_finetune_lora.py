# MG-LLaVA stage 2 with Vicuna-7B v1.5, LoRA variant: LoRA on the LLM (rank 128) instead of full fine-tuning; the
# adapters, fusion and projectors train. Otherwise mg_llava_vicuna_7b_v15_finetune.py.
#   xtuner train xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune_lora.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune_lora.py --gpus 8
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .mg_llava_vicuna_7b_v15_finetune import *
    from .._base_.derive import derive_settings

model.update(
    freeze_llm=True,
    llm_lora=dict(type=LoraConfig, r=128, lora_alpha=256, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM"),
)

derive_settings(globals())  # every part that holds a setting above
