"""AVG-LLaVA's adaptive visual granularity (scaler, router, multi-granularity tuning, RGLF) for MG-LLaVA and LLaVA.
Importing registers every module."""
from .avg_llava_model import AVGLLaVAModel
from .losses import granularity_ranking_loss, rglf_loss
from .router import VisualGranularityRouter, select_instruction_tokens
from .scaler import AVG_LLAVA_POOLS, VisualGranularityScaler

__all__ = [
    "AVGLLaVAModel",
    "AVG_LLAVA_POOLS",
    "VisualGranularityRouter",
    "VisualGranularityScaler",
    "granularity_ranking_loss",
    "rglf_loss",
    "select_instruction_tokens",
]
