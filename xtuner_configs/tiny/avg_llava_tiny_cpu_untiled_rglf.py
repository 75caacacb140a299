# AVG-LLaVA stage 4 (RGLF, ranking-based granularity learning from LLM feedback) on untiled images, tiny CPU version:
# everything but the router is frozen; a no-grad LLM pass per granularity ranks them by each sample's loss and the
# router learns that ranking (0.1 x cross-entropy on the best + the rank-distance ranking loss, margin 1.0 x rank
# distance x loss gap), lr 1e-3. Otherwise avg_llava_tiny_cpu_untiled_multi_granularity.py. After stage 3:  xtuner train
# xtuner_configs/tiny/avg_llava_tiny_cpu_untiled_rglf.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_tiny_cpu_untiled_multi_granularity import *
    from .._base_.derive import derive_settings

pretrained_pth = "work_dirs/avg_llava_tiny_cpu_untiled_multi_granularity"  # stage 3's work dir
model.update(stage="rglf", freeze_llm=True)
lr = 1e-3  # as AVG-LLaVA's RGLF

derive_settings(globals())  # every part that holds a setting above
