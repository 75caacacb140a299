"""Training-loop additions for the DeepSpeed path."""
from .zero3_weights_hook import ZeRO3TrainableWeightsHook

__all__ = ["ZeRO3TrainableWeightsHook"]
