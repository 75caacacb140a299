"""Ablation: Mini-Gemini's Patch Info Mining in place of the Conv-Gate (paper Table 5a, "Patch Info Mining").

Shape shorthand: I images; T = h*w low-res tokens (24x24 at 336 px); C low-res channels (1024); [C_k] high-res
stage channels (ConvNeXt-L: 192, 384, 768, 1536), C_H = sum_k C_k (2880); (h0, w0) the finest stage's size (192x192
at 768 px); M = h0 / h, the side of each token's region (8); D = C.

Mini-Gemini's high-res candidates are every ConvNeXt stage resized (bilinear) to the finest stage's size and
concatenated over channels. Each low-res token at grid cell (r, c) is a query over the M x M high-res patches of its
own region, rows r*M .. r*M+M-1 and columns c*M .. c*M+M-1, and the mined feature is added to it:

    T_V = L + softmax(phi_q(L) phi_k(X_H)^T / sqrt(D)) phi_v(X_H)

with phi_* = LayerNorm then Linear (to D); the MLP of Mini-Gemini's equation is the model's projector, which follows.
"""
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mg_llava.registry import MODELS


def concat_stages(stage_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """[(I, C_k, h_k, w_k)], finest first -> (I, C_H, h0, w0): every stage bilinearly resized to the finest one's
    size (``align_corners=False``) and concatenated over channels in stage order."""
    size = stage_maps[0].shape[-2:]
    resized = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
               for m in stage_maps]
    return torch.cat(resized, dim=1)


def region_patches(high: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(I, C_H, M*h, M*w) -> (I, h*w, M*M, C_H): the patches of each low-res cell's region, cells row-major and
    patches row-major inside the region."""
    images, channels, rows, cols = high.shape
    if rows % height or cols % width or rows // height != cols // width:
        raise ValueError(f"the {rows}x{cols} high-res map does not split into the {height}x{width} low-res grid's "
                         f"square regions")
    side = rows // height
    regions = high.reshape(images, channels, height, side, width, side).permute(0, 2, 4, 3, 5, 1)
    return regions.reshape(images, height * width, side * side, channels)


@MODELS.register_module()
class PatchInfoMining(nn.Module):
    """Each low-res token attends to the high-res patches of its own region; the result is added to it.

    The output projections ``value`` start at zero, so at init the module is the identity on L (as the Conv-Gate).

    Args:
        low_channels: C, the low-res token width; also the output width and D.
        high_channels: [C_k], the channels of every high-res stage, finest first (the model passes the encoder's).
    """

    uses_high_res = True
    reads_stages = True  # the model hands over every stage map, not only the last

    def __init__(self, low_channels: int, high_channels: Sequence[int]):
        super().__init__()
        if isinstance(high_channels, int):
            raise TypeError("PatchInfoMining reads every high-res stage: high_channels must list their channels")
        self.in_channels = list(high_channels)
        self.out_channels = low_channels
        candidate_channels = sum(self.in_channels)
        self.query = nn.Sequential(nn.LayerNorm(low_channels), nn.Linear(low_channels, low_channels))
        self.key = nn.Sequential(nn.LayerNorm(candidate_channels), nn.Linear(candidate_channels, low_channels))
        self.value = nn.Sequential(nn.LayerNorm(candidate_channels), nn.Linear(candidate_channels, low_channels))
        nn.init.zeros_(self.value[1].weight)
        nn.init.zeros_(self.value[1].bias)

    def forward(self, low: torch.Tensor, high: Sequence[torch.Tensor]) -> torch.Tensor:
        """low (I, h*w, C) row-major tokens of a square grid, high [(I, C_k, h_k, w_k)] -> (I, h*w, C)."""
        channels = [m.shape[1] for m in high]
        if channels != self.in_channels:
            raise ValueError(f"stage maps have channels {channels}, expected {self.in_channels}")
        side = math.isqrt(low.shape[1])
        if side * side != low.shape[1]:
            raise ValueError(f"{low.shape[1]} low-res tokens do not form a square grid")
        dtype = self.query[1].weight.dtype
        low = low.to(dtype)
        patches = region_patches(concat_stages([m.to(dtype) for m in high]), side, side)  # (I, T, M*M, C_H)
        query = self.query(low).unsqueeze(2)  # (I, T, 1, D)
        mined = F.scaled_dot_product_attention(query, self.key(patches), self.value(patches))  # (I, T, 1, D)
        return low + mined.squeeze(2)

    def extra_repr(self) -> str:
        return f"low_channels={self.out_channels}, high_channels={self.in_channels}"
