# AVG-LLaVA stage 4 (RGLF) on tiled images, tiny CPU version: only the router trains, on the LLM's per-sample losses
# with each granularity applied to the global grid and every crop grid; the router averages its scores over the global
# view and every crop, and learns the authors' rank-distance ranking loss. Otherwise
# avg_llava_tiny_cpu_multi_granularity.py (with avg_llava_tiny_cpu_untiled_rglf.py's stage-4 settings).
#   xtuner train xtuner_configs/tiny/avg_llava_tiny_cpu_rglf.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_tiny_cpu_multi_granularity import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/avg_llava_tiny_cpu_multi_granularity"  # stage 3's work dir: its last checkpoint
model.update(stage="rglf", freeze_llm=True)
lr = 1e-3  # as AVG-LLaVA's RGLF

derive_settings(globals())  # every part that holds a setting above
