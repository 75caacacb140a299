"""Ablation: Flamingo's Perceiver Resampler in place of the Conv-Gate (paper Table 5a, "Resampler", its [79]).

Shape shorthand: I images; T = h*w low-res tokens (576); C low-res channels (1024); C_S the last high-res stage's
channels (1536), h*w its grid; R latents (the model's tokens per image); D = C the latent width.

The inputs are the low-res tokens and the last high-res stage's tokens (projected to C), one sequence X of T + h*w
tokens. R learned latents are refined by ``depth`` layers, each

    Z = Z + Attention(q = LN(Z), k = v = concat(LN(X), LN(Z)))       (latents also attend to themselves)
    Z = Z + FFN(LN(Z))                                               (LayerNorm, Linear to 4D, GELU, Linear to D)

and the output is LN(Z), (I, R, C). As in Flamingo no position is added to X (Flamingo adds only per-frame time
embeddings), so the output does not depend on the order of the input tokens.
"""
from typing import Optional

import torch
import torch.nn as nn

from mg_llava.registry import MODELS


class ResamplerLayer(nn.Module):
    """One Perceiver Resampler layer: latents attend to concat(features, latents), then a feed-forward."""

    def __init__(self, channels: int, num_heads: int, ffn_ratio: int):
        super().__init__()
        self.feature_norm = nn.LayerNorm(channels)
        self.latent_norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, num_heads, bias=False, batch_first=True)
        self.ffn = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, ffn_ratio * channels, bias=False),
                                 nn.GELU(), nn.Linear(ffn_ratio * channels, channels, bias=False))

    def forward(self, latents: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """latents (I, R, D), features (I, S, D) -> latents (I, R, D)."""
        queries = self.latent_norm(latents)
        keys = torch.cat([self.feature_norm(features), queries], dim=1)
        latents = latents + self.attention(queries, keys, keys, need_weights=False)[0]
        return latents + self.ffn(latents)


@MODELS.register_module()
class PerceiverResampler(nn.Module):
    """R learned latents resample the low-res tokens and the last high-res stage's tokens.

    Args:
        low_channels: C, the low-res token width; the latent and output width.
        high_channels: C_S, the channels of the last high-res stage.
        grid_tokens: T, the low-res grid's tokens per image (the model passes it): the number of latents when
            ``num_latents`` is None, so the LLM sees as many tokens per image as with the Conv-Gate.
        num_latents: R; None for T. Flamingo uses 64; more than T is refused by the model (the training sequences
            reserve T tokens per image).
        depth: layers (Flamingo: 6).
        num_heads: attention heads (Flamingo: 8).
        ffn_ratio: feed-forward width / D (Flamingo: 4).
    """

    uses_high_res = True
    takes_grid_tokens = True  # the model passes grid_tokens

    def __init__(self, low_channels: int, high_channels: int, grid_tokens: int, num_latents: Optional[int] = None,
                 depth: int = 6, num_heads: int = 8, ffn_ratio: int = 4):
        super().__init__()
        self.out_channels = low_channels
        self.num_tokens = num_latents or grid_tokens
        self.high_proj = nn.Linear(high_channels, low_channels)
        self.latents = nn.Parameter(torch.randn(self.num_tokens, low_channels) * 0.02)
        self.layers = nn.ModuleList(ResamplerLayer(low_channels, num_heads, ffn_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(low_channels)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """low (I, T, C), high (I, C_S, h, w) -> (I, R, C)."""
        dtype = self.latents.dtype
        high_tokens = self.high_proj(high.to(dtype).flatten(2).transpose(1, 2))
        features = torch.cat([low.to(dtype), high_tokens], dim=1)
        # repeat, not expand: a view of a parameter taken under no_grad still requires grad, and torch's module
        # tracker (FlopCounterMode, tools/flops_table5.py) refuses such an input
        latents = self.latents.unsqueeze(0).repeat(low.shape[0], 1, 1)
        for layer in self.layers:
            latents = layer(latents, features)
        return self.norm(latents)

    def extra_repr(self) -> str:
        return f"num_latents={self.num_tokens}, width={self.out_channels}"
