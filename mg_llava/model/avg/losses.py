"""The router's training objective in RGLF (ranking-based granularity learning from LLM feedback).

Shape shorthand: I images, K granularities. ``lm_losses`` (I, K) holds, for each image, the language-model loss
(mean token cross-entropy of its sample's answer) with each granularity's tokens, measured without gradient.
"""
from typing import Dict

import torch
import torch.nn.functional as F

RANK_FORMS = ("rank_distance", "pairwise_mean")


def granularity_ranking_loss(logits: torch.Tensor, lm_losses: torch.Tensor, margin: float = 1.0,
                             form: str = "rank_distance") -> torch.Tensor:
    """A hinge loss that orders the router's logits like the granularities' LM losses.

    ``form="rank_distance"`` (AVG-LLaVA's authors): each image's granularities are ranked by LM loss, best first
    (a stable sort: equal losses keep the scaler's order). For each rank distance d = 1 .. K - 1 and each ranked
    pair (r, r + d) the router pays ``max(0, logit[r + d] - logit[r] + margin * d * (loss[r + d] - loss[r]))``:
    the margin grows with the distance in rank as well as with the loss gap. The hinge is averaged over the pairs
    of one distance (and the images) and the K - 1 distances are summed. Equal losses still ask for the ranked
    order with a zero margin.

    ``form="pairwise_mean"`` (this project's reading before; kept for configs that ask for it): the mean over all
    K (K - 1) / 2 pairs, below.

    For every pair (a, b) with ``lm_losses[a] < lm_losses[b]`` (a is better) the router pays
    ``max(0, margin * (lm_losses[b] - lm_losses[a]) - (logits[a] - logits[b]))``: a's logit must exceed b's by the
    margin scaled by the loss gap. Pairs with equal losses cost nothing. The result is the mean over images of the
    mean over the K (K - 1) / 2 pairs.

    Args:
        logits: (I, K) router logits.
        lm_losses: (I, K) LM losses (no gradient is taken through them).
        margin: the margin per unit of loss gap (1.0).
        form: ``"rank_distance"`` or ``"pairwise_mean"``.
    """
    if form not in RANK_FORMS:
        raise ValueError(f"form must be one of {RANK_FORMS}, got {form!r}")
    lm_losses = lm_losses.detach().to(logits.dtype)
    if form == "rank_distance":
        return _rank_distance_loss(logits, lm_losses, margin)
    num_granularities = logits.shape[-1]
    a, b = torch.triu_indices(num_granularities, num_granularities, offset=1, device=logits.device)
    gap = lm_losses[:, b] - lm_losses[:, a]  # > 0 where a is better
    sign = gap.sign()  # orient each pair so that the better granularity comes first
    hinge = (margin * gap.abs() - sign * (logits[:, a] - logits[:, b])).clamp(min=0) * (gap != 0)
    return hinge.mean(dim=1).mean()


def _rank_distance_loss(logits: torch.Tensor, lm_losses: torch.Tensor, margin: float) -> torch.Tensor:
    order = lm_losses.argsort(dim=-1, stable=True)  # best (lowest loss) first
    ranked_logits, ranked_losses = logits.gather(-1, order), lm_losses.gather(-1, order)
    num_granularities = logits.shape[-1]
    total = logits.new_zeros(())
    for d in range(1, num_granularities):
        better, worse = ranked_logits[:, :-d], ranked_logits[:, d:]
        gap = ranked_losses[:, d:] - ranked_losses[:, :-d]  # >= 0
        total = total + (worse - better + margin * d * gap).clamp(min=0).mean()
    return total


def rglf_loss(logits: torch.Tensor, lm_losses: torch.Tensor, ce_weight: float = 0.1, margin: float = 1.0,
              rank_form: str = "rank_distance") -> Dict[str, torch.Tensor]:
    """``ce_weight`` x cross-entropy towards each image's lowest-loss granularity + the ranking loss
    (:func:`granularity_ranking_loss` of ``rank_form``).

    Returns the two terms under keys mmengine sums into the total (``loss_*``) and the target granularities'
    agreement with the router's argmax (``router_acc``, logged only).
    """
    best = lm_losses.argmin(dim=-1)
    return dict(
        loss_router_ce=ce_weight * F.cross_entropy(logits, best),
        loss_router_rank=granularity_ranking_loss(logits, lm_losses, margin, rank_form),
        router_acc=(logits.argmax(dim=-1) == best).float().mean().detach(),
    )
