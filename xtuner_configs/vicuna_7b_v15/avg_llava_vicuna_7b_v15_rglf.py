# AVG-LLaVA stage 4 (RGLF) on tiled images, MG-LLaVA Vicuna-7B v1.5: only the router trains; each granularity is applied
# to the global grid and every crop grid when the LLM ranks them; the router averages its scores over the global view
# and every crop (as AVG-LLaVA's authors). Checkpoints hold the router, the row-end token and every weight stage 3
# trained: one file deploys. Otherwise avg_llava_vicuna_7b_v15_multi_granularity.py (with
# avg_llava_vicuna_7b_v15_untiled_rglf.py's stage-4 settings).
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_rglf.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_vicuna_7b_v15_multi_granularity import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/avg_llava_vicuna_7b_v15_multi_granularity"  # stage 3's work dir: its last checkpoint
# The LLM is frozen, but the backward to the router still keeps its activations: checkpointing (tools/memory_plan.py)
model.update(stage="rglf", freeze_llm=True, use_activation_checkpointing=True)
lr = 1e-3
strategy.exclude_frozen_parameters = False  # the model's state_dict decides: router + stage-3 weights

derive_settings(globals())  # every part that holds a setting above
