# AVG-LLaVA stage 4 (RGLF) on untiled images, MG-LLaVA Vicuna-7B v1.5: starts from stage 3; everything but the router is
# frozen. Each step runs the LLM without gradient once per granularity, ranks the granularities by each sample's loss,
# and trains the router on 0.1 x cross-entropy towards the best + the rank-distance ranking loss (margin 1.0 x rank
# distance x loss gap), lr 1e-3. Checkpoints hold the router and every weight stage 3 trained: one file deploys.
# Otherwise avg_llava_vicuna_7b_v15_untiled_multi_granularity.py (same data, batch and schedule).
#   xtuner train xtuner_configs/vicuna_7b_v15/avg_llava_vicuna_7b_v15_untiled_rglf.py
from mmengine.config import read_base

with read_base():
    from .avg_llava_vicuna_7b_v15_untiled_multi_granularity import *
    from .._base_.derive import derive_settings

pretrained_pth = "./work_dirs/avg_llava_vicuna_7b_v15_untiled_multi_granularity"  # stage 3's work dir
# The LLM is frozen, but the backward to the router still keeps its activations: checkpointing (tools/memory_plan.py)
model.update(stage="rglf", freeze_llm=True, use_activation_checkpointing=True)
lr = 1e-3
strategy.exclude_frozen_parameters = False  # the model's state_dict decides: router + stage-3 weights

derive_settings(globals())  # every part that holds a setting above
