"""Training-loop additions: trainable weights under DeepSpeed ZeRO-3, sample answers during training."""
from .sample_answers_hook import SampleAnswersHook
from .zero3_weights_hook import ZeRO3TrainableWeightsHook

__all__ = ["SampleAnswersHook", "ZeRO3TrainableWeightsHook"]
