# MG-LLaVA stage 2 (instruction tuning) with Llama-3-8B-Instruct, on the shared recipe _base_/mg_llava_finetune.py.
#   xtuner train xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_finetune.py
#   python tools/slurm_train.py PARTITION mgllava_s2 xtuner_configs/llama3_8b_instruct/mg_llava_llama3_8b_instruct_finetune.py --gpus 8
from mmengine.config import read_base

with read_base():
    from .._base_.mg_llava_finetune import *
    from .._base_.llms.llama3_8b_instruct import *

# the LLM and template above replace Vicuna-7B's in the parts that hold them
tokenizer.pretrained_model_name_or_path = model.llm.pretrained_model_name_or_path = llm_name_or_path
train_dataloader.dataset.update(tokenizer=tokenizer, template_map_fn=dict(template=prompt_template))

# stage 1's last checkpoint: adjust
model.pretrained_pth = pretrained_pth = "./work_dirs/mg_llava_llama3_8b_instruct_pretrain/iter_4942.pth"

optim_wrapper.optimizer.lr = lr = 1e-5

train_dataloader.batch_size = strategy.train_micro_batch_size_per_gpu = batch_size = 4  # per device
strategy.gradient_accumulation_steps = accumulative_counts = 4  # global batch 128 = 4 x 8 x 4
train_dataloader.sampler.per_device_batch_size = batch_size * accumulative_counts
