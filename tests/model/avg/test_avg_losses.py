import math

import pytest
import torch

from mg_llava.model.avg import granularity_ranking_loss, rglf_loss


PAIRWISE = dict(form="pairwise_mean")  # the project's earlier reading, kept for configs that ask for it


def test_rank_distance_loss_hand_computed_four_granularities():
    """The authors' form: ranked by LM loss, each rank distance d pays margin x d x gap, averaged per d, summed.
    logits (0, 1, 0.5, -1), losses (2, 1, 4, 3): ranked 1, 0, 3, 2 -> logits (1, 0, -1, 0.5), losses (1, 2, 3, 4).
      d = 1: (1,0): 0 - 1 + 1 = 0; (0,3): -1 - 0 + 1 = 0; (3,2): 0.5 + 1 + 1 = 2.5   -> mean 2.5 / 3
      d = 2: (1,3): -1 - 1 + 2 x 2 = 2; (0,2): 0.5 - 0 + 2 x 2 = 4.5                 -> mean 6.5 / 2
      d = 3: (1,2): 0.5 - 1 + 3 x 3 = 8.5                                            -> 8.5
    The all-pairs mean with margin x gap only: (0 + 0 + 2.5 + 0 + 2.5 + 2.5) / 6 = 1.25."""
    logits = torch.tensor([[0.0, 1.0, 0.5, -1.0]])
    lm = torch.tensor([[2.0, 1.0, 4.0, 3.0]])
    assert granularity_ranking_loss(logits, lm).item() == pytest.approx(2.5 / 3 + 6.5 / 2 + 8.5)
    assert granularity_ranking_loss(logits, lm, form="rank_distance").item() == pytest.approx(2.5 / 3 + 3.25 + 8.5)
    assert granularity_ranking_loss(logits, lm, **PAIRWISE).item() == pytest.approx(1.25)
    # margin 0.5: d = 1: 0, 0, 2.0; d = 2: 0, 2.5; d = 3: 4.0
    assert granularity_ranking_loss(logits, lm, margin=0.5).item() == pytest.approx(2.0 / 3 + 2.5 / 2 + 4.0)
    with pytest.raises(ValueError, match="form must be one of"):
        granularity_ranking_loss(logits, lm, form="listwise")


def test_rank_distance_loss_keeps_tied_granularities_in_scaler_order():
    """Equal losses rank stably (the scaler's order) and ask for that order with a zero margin."""
    lm = torch.tensor([[2.0, 2.0]])
    assert granularity_ranking_loss(torch.tensor([[0.0, 5.0]]), lm).item() == pytest.approx(5.0)
    assert granularity_ranking_loss(torch.tensor([[5.0, 0.0]]), lm).item() == 0.0
    assert granularity_ranking_loss(torch.tensor([[0.0, 5.0]]), lm, **PAIRWISE).item() == 0.0


def test_rank_distance_loss_is_zero_once_ordered_with_distance_scaled_gaps():
    lm = torch.tensor([[1.0, 2.0, 3.0]])
    # d = 1 asks 1 x 1 per step, d = 2 asks 2 x 2 = 4 between the ends: (5, 4, 1) meets both, (5, 4, 1.5) misses d=2
    assert granularity_ranking_loss(torch.tensor([[5.0, 4.0, 1.0]]), lm).item() == 0.0
    assert granularity_ranking_loss(torch.tensor([[5.0, 4.0, 1.5]]), lm).item() == pytest.approx(0.5)
    assert granularity_ranking_loss(torch.tensor([[5.0, 4.0, 1.5]]), lm, **PAIRWISE).item() == 0.0


def test_ranking_loss_hand_computed_three_granularities():
    # losses 1.0, 3.0, 2.0: order 0 < 2 < 1. Pairs (a, b) with their gaps and logit differences:
    #   (0, 1): gap 2.0, s0 - s1 = 0.5 - 1.0 = -0.5 -> max(0, 2.0 + 0.5) = 2.5
    #   (0, 2): gap 1.0, s0 - s2 = 0.5 - 0.0 = 0.5  -> max(0, 1.0 - 0.5) = 0.5
    #   (1, 2): 2 is better by 1.0, s2 - s1 = -1.0  -> max(0, 1.0 + 1.0) = 2.0
    logits = torch.tensor([[0.5, 1.0, 0.0]])
    lm = torch.tensor([[1.0, 3.0, 2.0]])
    assert granularity_ranking_loss(logits, lm, **PAIRWISE).item() == pytest.approx((2.5 + 0.5 + 2.0) / 3)
    # margin 0.5 halves each required gap: 1.0 + 0.5 -> 1.5; 0.5 - 0.5 -> 0; 0.5 + 1.0 -> 1.5
    assert granularity_ranking_loss(logits, lm, margin=0.5, **PAIRWISE).item() == pytest.approx(3.0 / 3)


def test_ranking_loss_is_zero_once_the_logits_are_ordered_by_the_scaled_gaps():
    lm = torch.tensor([[1.0, 3.0, 2.0]])
    # every gap exactly met
    assert granularity_ranking_loss(torch.tensor([[2.0, 0.0, 1.0]]), lm, **PAIRWISE).item() == 0.0
    almost = granularity_ranking_loss(torch.tensor([[1.9, 0.0, 1.0]]), lm, **PAIRWISE).item()  # (0,1): 0.1; (0,2): 0.1
    assert almost == pytest.approx(0.2 / 3)


def test_ranking_loss_ties_cost_nothing_and_images_are_averaged():
    logits = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    lm = torch.tensor([[2.0, 2.0], [1.0, 2.0]])  # image 0: a tie; image 1: 0 better by 1 -> max(0, 1 - 0) = 1
    assert granularity_ranking_loss(logits, lm, **PAIRWISE).item() == pytest.approx(0.5)


def test_ranking_loss_gradient_pushes_the_better_granularity_up():
    logits = torch.zeros(1, 2, requires_grad=True)
    granularity_ranking_loss(logits, torch.tensor([[1.0, 2.0]])).backward()
    assert logits.grad.tolist() == [[-1.0, 1.0]]


def test_rglf_loss_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax (0.25, 0.75)
    lm = torch.tensor([[1.0, 1.5]])  # granularity 0 is best
    out = rglf_loss(logits, lm)
    assert out["loss_router_ce"].item() == pytest.approx(0.1 * -math.log(0.25))
    assert out["loss_router_rank"].item() == pytest.approx(0.5 + math.log(3.0))  # two granularities: forms agree
    assert out["router_acc"].item() == 0.0
    four = torch.tensor([[0.0, 1.0, 0.5, -1.0]]), torch.tensor([[2.0, 1.0, 4.0, 3.0]])
    three = rglf_loss(*four, rank_form="pairwise_mean")
    assert three["loss_router_rank"].item() == pytest.approx(1.25)
