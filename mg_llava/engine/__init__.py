"""Training-loop additions: trainable weights under DeepSpeed ZeRO-3, sample answers during training, the list of
bad samples left out or replaced."""
from .bad_samples_hook import BadSamplesHook
from .sample_answers_hook import SampleAnswersHook
from .zero3_weights_hook import ZeRO3TrainableWeightsHook

__all__ = ["BadSamplesHook", "SampleAnswersHook", "ZeRO3TrainableWeightsHook"]
