"""The router's training objective in RGLF (ranking-based granularity learning from LLM feedback).

Shape shorthand: I images, K granularities. ``lm_losses`` (I, K) holds, for each image, the language-model loss
(mean token cross-entropy of its sample's answer) with each granularity's tokens, measured without gradient.
"""
from typing import Dict

import torch
import torch.nn.functional as F


def granularity_ranking_loss(logits: torch.Tensor, lm_losses: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pairwise hinge loss that orders the router's logits like the granularities' LM losses.

    For every pair (a, b) with ``lm_losses[a] < lm_losses[b]`` (a is better) the router pays
    ``max(0, margin * (lm_losses[b] - lm_losses[a]) - (logits[a] - logits[b]))``: a's logit must exceed b's by the
    margin scaled by the loss gap. Pairs with equal losses cost nothing. The result is the mean over images of the
    mean over the K (K - 1) / 2 pairs.

    Args:
        logits: (I, K) router logits.
        lm_losses: (I, K) LM losses (no gradient is taken through them).
        margin: the margin per unit of loss gap (1.0).
    """
    lm_losses = lm_losses.detach().to(logits.dtype)
    num_granularities = logits.shape[-1]
    a, b = torch.triu_indices(num_granularities, num_granularities, offset=1, device=logits.device)
    gap = lm_losses[:, b] - lm_losses[:, a]  # > 0 where a is better
    sign = gap.sign()  # orient each pair so that the better granularity comes first
    hinge = (margin * gap.abs() - sign * (logits[:, a] - logits[:, b])).clamp(min=0) * (gap != 0)
    return hinge.mean(dim=1).mean()


def rglf_loss(logits: torch.Tensor, lm_losses: torch.Tensor, ce_weight: float = 0.1,
              margin: float = 1.0) -> Dict[str, torch.Tensor]:
    """``ce_weight`` x cross-entropy towards each image's lowest-loss granularity + the ranking loss.

    Returns the two terms under keys mmengine sums into the total (``loss_*``) and the target granularities'
    agreement with the router's argmax (``router_acc``, logged only).
    """
    best = lm_losses.argmin(dim=-1)
    return dict(
        loss_router_ce=ce_weight * F.cross_entropy(logits, best),
        loss_router_rank=granularity_ranking_loss(logits, lm_losses, margin),
        router_acc=(logits.argmax(dim=-1) == best).float().mean().detach(),
    )
