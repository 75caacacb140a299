# MG-LLaVA stage 1 on the tiny CPU default with DeepSpeed ZeRO-3 (as Yi-1.5-34B trains): the ZeRO-2 config with the
# GPU ZeRO-3 configs' settings, which also write the gathered trainable weights next to each checkpoint.
#   NPROC_PER_NODE=2 xtuner train xtuner_configs/tiny/mg_llava_tiny_cpu_zero3_pretrain.py
from mmengine.config import read_base

from mg_llava.engine import BadSamplesHook, ZeRO3TrainableWeightsHook

with read_base():
    from .mg_llava_tiny_cpu_zero2_pretrain import *  # noqa: F401,F403
    from .._base_.derive import derive_settings

zero_stage = 3
strategy.config.zero_optimization = dict(stage=zero_stage, overlap_comm=True,
                                         stage3_gather_16bit_weights_on_model_save=True)
custom_hooks = [dict(type=BadSamplesHook), dict(type=ZeRO3TrainableWeightsHook)]  # no sample answers (untried)

derive_settings(globals())  # every part that holds a setting above
