"""Conv-Gate fusion of low- and high-resolution tokens (SPEC 1.4, the released form of the paper's Eq. 3)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mg_llava.registry import MODELS


def tokens_to_grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(I, h*w, C) row-major tokens -> (I, C, h, w)."""
    if tokens.shape[1] != height * width:
        raise ValueError(f"{tokens.shape[1]} low-res tokens do not form the {height}x{width} high-res grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


@MODELS.register_module()
class ConvGateFusion(nn.Module):
    """E_F = L_f + H_f * tanh(g), with one gate scalar g per image.

    ``H_f = slow_proj(GELU(slow_conv(S)))`` (1x1 convs on the last high-res stage map S),
    ``L_f = L + fast_proj(GELU(fast_conv(L)))`` (depthwise 7x7 then 1x1 on the low-res token grid),
    ``g = gate(mean over tokens of concat(L_f, H_f))`` with gate = Linear(2C, C/2) -> GELU -> Linear(C/2, 1).
    ``slow_*`` is the high-res path and ``fast_*`` the low-res path; the names are the released checkpoint keys.
    The projections start at zero, so at init the module is the identity on L.

    Args:
        low_channels: C, the low-res token width (1024 for CLIP ViT-L); also the output width.
        high_channels: C_S, the channels of the last high-res stage (1536 for ConvNeXt-L).
        gate_channels: hidden width of the gate MLP (default C // 2, 512 in the released model).
        kernel_size: depthwise kernel of the low-res path.
    """

    uses_high_res = True

    def __init__(self, low_channels: int, high_channels: int, gate_channels: Optional[int] = None,
                 kernel_size: int = 7):
        super().__init__()
        gate_channels = gate_channels or low_channels // 2
        self.out_channels = low_channels
        self.slow_conv = nn.Conv2d(high_channels, high_channels, 1)
        self.slow_proj = nn.Conv2d(high_channels, low_channels, 1)
        self.fast_conv = nn.Conv2d(low_channels, low_channels, kernel_size, padding=kernel_size // 2,
                                   groups=low_channels)
        self.fast_proj = nn.Conv2d(low_channels, low_channels, 1)
        self.gate = nn.Sequential(nn.Linear(2 * low_channels, gate_channels), nn.GELU(),
                                  nn.Linear(gate_channels, 1))
        self.reset_parameters()

    def reset_parameters(self):
        for conv in (self.slow_conv, self.fast_conv):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for proj in (self.slow_proj, self.fast_proj):  # zero projections: identity on L at init
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """low (I, h*w, C) tokens, high (I, C_S, h, w) last-stage map -> fused tokens (I, h*w, C)."""
        dtype = self.slow_conv.weight.dtype
        low, high = low.to(dtype), high.to(dtype)
        height, width = high.shape[-2:]
        high_tokens = self.slow_proj(F.gelu(self.slow_conv(high))).flatten(2).transpose(1, 2)
        low_grid = tokens_to_grid(low, height, width)
        low_tokens = low + self.fast_proj(F.gelu(self.fast_conv(low_grid))).flatten(2).transpose(1, 2)
        gate = self.gate(torch.cat([low_tokens, high_tokens], dim=-1).mean(dim=1))  # (I, 1)
        return low_tokens + high_tokens * torch.tanh(gate).unsqueeze(1)
