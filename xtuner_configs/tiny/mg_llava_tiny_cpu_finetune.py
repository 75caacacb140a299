# MG-LLaVA stage 2 (instruction tuning) on the tiny CPU default: the LLM trains too; starts from stage 1's weights.
# Otherwise mg_llava_tiny_cpu_pretrain.py.
# After stage 1:  xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py
from mmengine.config import read_base
from xtuner.dataset.samplers import LengthGroupedSampler

with read_base():
    from .mg_llava_tiny_cpu_pretrain import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/mg_llava_tiny_cpu_pretrain"  # stage 1's work dir: its last checkpoint is loaded
model.update(freeze_llm=False)

data_path = assets + "data/finetune.json"
train_dataloader.sampler = dict(
    type=LengthGroupedSampler,
    length_property="modality_length",
    per_device_batch_size=None,  # derived: batch_size x accumulative_counts
)

max_epochs = 40
lr = 5e-3  # the real recipes: 2e-5 (Llama-3: 1e-5); a random tiny LLM needs more
save_steps = 100

derive_settings(globals())  # every part that holds a setting above
