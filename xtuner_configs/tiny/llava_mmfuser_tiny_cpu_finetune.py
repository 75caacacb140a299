# LLaVA-1.5 + MMFuser stage 2 (instruction tuning) on the tiny CPU default: the LLM trains too; starts from stage 1.
# Otherwise llava_mmfuser_tiny_cpu_pretrain.py; the stage-2 settings as mg_llava_tiny_cpu_finetune.py.
# After stage 1:  xtuner train xtuner_configs/tiny/llava_mmfuser_tiny_cpu_finetune.py
from mmengine.config import read_base
from xtuner.dataset.samplers import LengthGroupedSampler

with read_base():
    from .llava_mmfuser_tiny_cpu_pretrain import *

pretrained_pth = "work_dirs/llava_mmfuser_tiny_cpu_pretrain/iter_20.pth"  # stage 1's last checkpoint
model.update(freeze_llm=False, pretrained_pth=pretrained_pth)

llava_dataset.data_path = train_dataloader.dataset.data_path = data_path = assets + "data/finetune.json"
train_dataloader.sampler = dict(
    type=LengthGroupedSampler, length_property="modality_length", per_device_batch_size=batch_size * accumulative_counts
)

optim_wrapper.optimizer.lr = lr = 5e-3  # the real recipes: 2e-5 (Llama-3: 1e-5); a random tiny LLM needs more
max_epochs = 40
param_scheduler[0].end = param_scheduler[1].begin = warmup_ratio * max_epochs
param_scheduler[1].end = train_cfg.max_epochs = max_epochs
default_hooks.checkpoint.interval = save_steps = 100
