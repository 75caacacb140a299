"""Ablation: channel concatenation of low- and high-resolution tokens (paper Table 5a, "Channel Concat")."""
import torch
import torch.nn as nn

from mg_llava.registry import MODELS


@MODELS.register_module()
class ChannelConcatFusion(nn.Module):
    """E_F = concat(L, S) along channels: (I, h*w, C), (I, C_S, h, w) -> (I, h*w, C + C_S). Parameter-free;
    the visual projector's input width grows to C + C_S.

    Args:
        low_channels: C, the low-res token width.
        high_channels: C_S, the channels of the last high-res stage.
    """

    uses_high_res = True

    def __init__(self, low_channels: int, high_channels: int):
        super().__init__()
        self.out_channels = low_channels + high_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        height, width = high.shape[-2:]
        if low.shape[1] != height * width:
            raise ValueError(f"{low.shape[1]} low-res tokens do not form the {height}x{width} high-res grid")
        return torch.cat([low, high.flatten(2).transpose(1, 2).to(low.dtype)], dim=-1)
