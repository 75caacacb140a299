"""Ablation: merging object features by cross-attention instead of appending them (paper Table 5b, Appendix C Fig. 7).

Shape shorthand: I images; T fused tokens per image (576); C_F the fusion's output width (1024); N_i boxes of image
i, N = max_i N_i; C_B the object features' width (2880). Both modules sit after the fusion and before the projectors,
on the features the projectors read; the paper's default (no module) appends one projected token per box.

- F-to-B (:class:`FusedToBoxCrossAttention`): the fused tokens are queries over their image's object features (keys
  and values); the enhanced fused tokens go to the LLM and the object features themselves do not.
- B-to-F (:class:`BoxToFusedCrossAttention`): the object features are queries over their image's fused tokens; the
  fused tokens and the enhanced object tokens go to the LLM, concatenated as in the default.

Each is one pre-norm block, ``q + Attention(LN(q), LN(kv), LN(kv))`` (torch's multi-head attention with ``kdim`` /
``vdim`` = the other side's width), whose output projection starts at zero: at init the features pass unchanged.
An image's boxes are padded to N and masked; an image without boxes keeps its fused tokens (F-to-B) or has no
object tokens (B-to-F).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from mg_llava.registry import MODELS


def pad_boxes(box_features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """I tensors (N_i, C_B) -> (I, N, C_B) zero-padded and a (I, N) mask, True on padding."""
    counts = torch.tensor([len(b) for b in box_features])
    padded = pad_sequence(list(box_features), batch_first=True)
    padding = torch.arange(padded.shape[1]).unsqueeze(0) >= counts.unsqueeze(1)
    return padded, padding.to(padded.device)


class CrossAttentionBlock(nn.Module):
    """``q + Attention(LN(q), LN(kv), LN(kv))``: q (I, Q, C_q), kv (I, K, C_kv) -> (I, Q, C_q)."""

    def __init__(self, query_channels: int, kv_channels: int, num_heads: int):
        super().__init__()
        self.query_norm = nn.LayerNorm(query_channels)
        self.kv_norm = nn.LayerNorm(kv_channels)
        self.attention = nn.MultiheadAttention(query_channels, num_heads, kdim=kv_channels, vdim=kv_channels,
                                               batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def forward(self, query: torch.Tensor, kv: torch.Tensor, kv_padding=None) -> torch.Tensor:
        kv = self.kv_norm(kv)
        return query + self.attention(self.query_norm(query), kv, kv, key_padding_mask=kv_padding,
                                      need_weights=False)[0]


@MODELS.register_module()
class FusedToBoxCrossAttention(nn.Module):
    """F-to-B: fused tokens attend to their image's object features; only the fused tokens reach the LLM.

    Args:
        fused_channels: C_F, the fusion's output width (the model passes it).
        box_channels: C_B, the object features' width (the model passes it).
        num_heads: attention heads; C_F must divide by it.
    """

    appends_boxes = False  # the model builds no box projector and appends no object tokens

    def __init__(self, fused_channels: int, box_channels: int, num_heads: int = 8):
        super().__init__()
        self.block = CrossAttentionBlock(fused_channels, box_channels, num_heads)

    def forward(self, fused: torch.Tensor, box_features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, None]:
        """fused (I, T, C_F), box_features I x (N_i, C_B) -> (fused (I, T, C_F), None)."""
        dtype = self.block.query_norm.weight.dtype
        fused = fused.to(dtype)
        # Images without boxes are left out: attention over no key at all is undefined (NaN)
        with_boxes = [i for i, b in enumerate(box_features) if len(b)]
        if not with_boxes:
            return fused, None
        boxes, padding = pad_boxes([box_features[i].to(dtype) for i in with_boxes])
        index = torch.tensor(with_boxes, device=fused.device)
        enhanced = self.block(fused[index], boxes, padding)
        return fused.index_copy(0, index, enhanced), None


@MODELS.register_module()
class BoxToFusedCrossAttention(nn.Module):
    """B-to-F: object features attend to their image's fused tokens; the LLM gets the fused tokens and the enhanced
    object tokens.

    Args:
        fused_channels: C_F, the fusion's output width (the model passes it).
        box_channels: C_B, the object features' width (the model passes it).
        num_heads: attention heads; C_B must divide by it.
    """

    appends_boxes = True

    def __init__(self, fused_channels: int, box_channels: int, num_heads: int = 8):
        super().__init__()
        self.block = CrossAttentionBlock(box_channels, fused_channels, num_heads)

    def forward(self, fused: torch.Tensor,
                box_features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """fused (I, T, C_F), box_features I x (N_i, C_B) -> (fused unchanged, I x (N_i, C_B) enhanced)."""
        dtype = self.block.query_norm.weight.dtype
        boxes, _ = pad_boxes([b.to(dtype) for b in box_features])
        enhanced = self.block(boxes, fused.to(dtype))  # padded queries are computed and dropped
        return fused, [rows[:len(b)] for rows, b in zip(enhanced, box_features)]
