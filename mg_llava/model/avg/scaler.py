"""AVG-LLaVA's visual granularity scaler: average pooling of the projected token grid.

Shape shorthand: I images, T = h x w tokens of one square grid (576 = 24 x 24 real, 16 = 4 x 4 tiny), H the LLM
width, K granularities, T_k = (h / kh) x (w / kw) tokens of granularity k.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mg_llava.registry import MODELS

# (rows, cols) pooled together; on a 24 x 24 grid: 576, 288 (24 x 12), 144 (12 x 12), 72 (12 x 6), 36 (6 x 6)
AVG_LLAVA_POOLS = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))


@MODELS.register_module()
class VisualGranularityScaler(nn.Module):
    """(I, T, H) projected tokens of a square grid -> K tensors (I, T_k, H), finest first.

    Granularity k averages non-overlapping ``pools[k]`` = (kh, kw) windows of the (h, w) grid (kh rows, kw columns)
    and flattens the pooled grid row-major, as the unpooled tokens are. Parameter-free.

    Args:
        pools: the (kh, kw) window of each granularity; (1, 1) keeps every token.
    """

    def __init__(self, pools: Sequence[Sequence[int]] = AVG_LLAVA_POOLS):
        super().__init__()
        self.pools: Tuple[Tuple[int, int], ...] = tuple((int(kh), int(kw)) for kh, kw in pools)
        if not self.pools or any(kh < 1 or kw < 1 for kh, kw in self.pools):
            raise ValueError(f"pools must be non-empty (rows, cols) pairs >= 1, got {pools}")

    @property
    def num_granularities(self) -> int:
        return len(self.pools)

    @staticmethod
    def grid_side(num_tokens: int) -> int:
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"the scaler pools a square token grid; {num_tokens} tokens are not one")
        return side

    def token_counts(self, num_tokens: int) -> List[int]:
        """T_k of every granularity for a grid of ``num_tokens`` tokens, e.g. 576 -> [576, 288, 144, 72, 36]."""
        side = self.grid_side(num_tokens)
        for kh, kw in self.pools:
            if side % kh or side % kw:
                raise ValueError(f"a {side}x{side} token grid cannot be pooled in {kh}x{kw} windows")
        return [(side // kh) * (side // kw) for kh, kw in self.pools]

    def grid_shape(self, side: int, k: int) -> Tuple[int, int]:
        """(rows, cols) of granularity ``k`` of a ``side`` x ``side`` grid, e.g. (24, 12) for k = 1 of 24."""
        kh, kw = self.pools[k]
        return side // kh, side // kw

    def forward(self, tokens: torch.Tensor) -> List[torch.Tensor]:
        num_images, num_tokens, width = tokens.shape
        self.token_counts(num_tokens)  # validates the grid
        side = self.grid_side(num_tokens)
        grid = tokens.transpose(1, 2).reshape(num_images, width, side, side)  # (I, H, h, w)
        out = []
        for kh, kw in self.pools:
            pooled = grid if (kh, kw) == (1, 1) else F.avg_pool2d(grid, kernel_size=(kh, kw), stride=(kh, kw))
            out.append(pooled.flatten(2).transpose(1, 2))  # (I, T_k, H)
        return out
