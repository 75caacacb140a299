# MG-LLaVA stage 1 (pretrain) with Llama-3-8B-Instruct, on the shared recipe _base_/mg_llava_pretrain.py.
#   xtuner train xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_pretrain.py
#   python tools/slurm_train.py PARTITION mgllava_s1 xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_pretrain.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_pretrain import *
    from .._base_.llms.llama3_8b_instruct import *

# the LLM and template above replace Vicuna-7B's in the parts that hold them
tokenizer.pretrained_model_name_or_path = model.llm.pretrained_model_name_or_path = llm_name_or_path
train_dataloader.dataset.update(tokenizer=tokenizer, template_map_fn=dict(template=prompt_template))

train_dataloader.batch_size = strategy.train_micro_batch_size_per_gpu = batch_size = 16  # per device
strategy.gradient_accumulation_steps = accumulative_counts = 2  # global batch 256 = 16 x 8 x 2
