"""Ablation: no fusion, the LLM sees plain LLaVA-1.5 low-res tokens."""
from typing import Optional

import torch
import torch.nn as nn

from mg_llava.registry import MODELS


@MODELS.register_module()
class NoFusion(nn.Module):
    """E_F = L: (I, N, C) -> (I, N, C). Parameter-free; the high-res map is not used.

    Args:
        low_channels: C, the low-res token width (the output width).
        high_channels: accepted so every fusion builds from the same arguments; unused.
    """

    uses_high_res = False

    def __init__(self, low_channels: int, high_channels: Optional[int] = None):
        super().__init__()
        self.out_channels = low_channels

    def forward(self, low: torch.Tensor, high: Optional[torch.Tensor] = None) -> torch.Tensor:
        return low
