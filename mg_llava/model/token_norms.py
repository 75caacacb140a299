"""The visual tokens' size next to the text's, for the training log (``MGLLaVAModel.forward`` adds both to its loss
dict; mmengine logs every non-loss entry at each logging interval).

Nothing normalises the fusion's or the projectors' output before the LLM: a run whose visual tokens grow far past
the text embeddings (issue 26 measured the tiny video pair at stage-2 lr 1e-2: mean norm 1.6 untrained, 588 after
stage 1, 1.1e5 after stage 2, against ~0.25 for text) still lowers its loss for a while, then stops telling frames
apart. Logged side by side, the blow-up is visible at the iteration it starts.

Shape shorthand: B samples, L tokens before placement, L' after, H the LLM width.
"""
from typing import Dict

import torch

from .video_tokens import is_placeholder


@torch.no_grad()
def token_norms(embed_tokens: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                inputs_embeds: torch.Tensor, placed_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The mean L2 norm of the visual tokens and of the text tokens' embeddings that one batch gave the LLM.

    Args:
        embed_tokens: the LLM's input embedding layer.
        input_ids: (B, L), placeholders (-200 images, -201 videos) where the visual tokens go.
        attention_mask: (B, L), True on real tokens.
        inputs_embeds: (B, L', H), the placed sequences (``token_assembler.assemble``).
        placed_mask: (B, L'), True on their real tokens.

    Returns ``{"text_norm": (), "visual_norm": ()}`` (float32); ``visual_norm`` only when the batch has visual
    tokens (a text-only batch has none to average). The placed sequences are the text embeddings with each
    placeholder replaced by its visual tokens, so the visual tokens' norms are what the placed tokens' norms add up
    to beyond the text's.
    """
    text = attention_mask.bool() & ~is_placeholder(input_ids)
    text_norms = embed_tokens(input_ids[text]).float().norm(dim=-1)
    placed_norms = inputs_embeds[placed_mask.bool()].float().norm(dim=-1)
    out = dict(text_norm=text_norms.mean())
    visual_count = placed_norms.numel() - text_norms.numel()
    if visual_count > 0:
        out["visual_norm"] = (placed_norms.sum() - text_norms.sum()) / visual_count
    return out


__all__ = ["token_norms"]
