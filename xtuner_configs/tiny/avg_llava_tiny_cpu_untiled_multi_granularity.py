# AVG-LLaVA stage 3 (multi-granularity instruction tuning) on untiled images (the global view only), tiny CPU version:
# one LLM pass per granularity (16, 8, 4, 2, 1 tokens of the 4x4 grid), losses averaged; the LLM, the fusion and both
# projectors train. Otherwise mg_llava_tiny_cpu_finetune.py (data, lr, batch, CPU settings). After MG-LLaVA's two
# stages:  xtuner train xtuner_configs/tiny/avg_llava_tiny_cpu_untiled_multi_granularity.py
from mmengine.config import read_base

with read_base():
    from .mg_llava_tiny_cpu_finetune import *
    from .._base_.models.avg_llava import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/mg_llava_tiny_cpu_finetune"  # MG-LLaVA stage 2's work dir: its last checkpoint
model.update(avg_llava_model, stage="multi_granularity")
del avg_llava_model
object_roi_size = 7  # RoIAlign grid before averaging; the released models use 56, which costs CPU time here
max_epochs = 10

derive_settings(globals())  # every part that holds a setting above
