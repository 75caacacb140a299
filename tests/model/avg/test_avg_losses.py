import math

import pytest
import torch

from mg_llava.model.avg import granularity_ranking_loss, rglf_loss


def test_ranking_loss_hand_computed_three_granularities():
    # losses 1.0, 3.0, 2.0: order 0 < 2 < 1. Pairs (a, b) with their gaps and logit differences:
    #   (0, 1): gap 2.0, s0 - s1 = 0.5 - 1.0 = -0.5 -> max(0, 2.0 + 0.5) = 2.5
    #   (0, 2): gap 1.0, s0 - s2 = 0.5 - 0.0 = 0.5  -> max(0, 1.0 - 0.5) = 0.5
    #   (1, 2): 2 is better by 1.0, s2 - s1 = -1.0  -> max(0, 1.0 + 1.0) = 2.0
    logits = torch.tensor([[0.5, 1.0, 0.0]])
    lm = torch.tensor([[1.0, 3.0, 2.0]])
    assert granularity_ranking_loss(logits, lm).item() == pytest.approx((2.5 + 0.5 + 2.0) / 3)
    # margin 0.5 halves each required gap: 1.0 + 0.5 -> 1.5; 0.5 - 0.5 -> 0; 0.5 + 1.0 -> 1.5
    assert granularity_ranking_loss(logits, lm, margin=0.5).item() == pytest.approx(3.0 / 3)


def test_ranking_loss_is_zero_once_the_logits_are_ordered_by_the_scaled_gaps():
    lm = torch.tensor([[1.0, 3.0, 2.0]])
    assert granularity_ranking_loss(torch.tensor([[2.0, 0.0, 1.0]]), lm).item() == 0.0  # every gap exactly met
    almost = granularity_ranking_loss(torch.tensor([[1.9, 0.0, 1.0]]), lm).item()  # (0,1): 0.1; (0,2): 0.1
    assert almost == pytest.approx(0.2 / 3)


def test_ranking_loss_ties_cost_nothing_and_images_are_averaged():
    logits = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    lm = torch.tensor([[2.0, 2.0], [1.0, 2.0]])  # image 0: a tie; image 1: 0 better by 1 -> max(0, 1 - 0) = 1
    assert granularity_ranking_loss(logits, lm).item() == pytest.approx(0.5)


def test_ranking_loss_gradient_pushes_the_better_granularity_up():
    logits = torch.zeros(1, 2, requires_grad=True)
    granularity_ranking_loss(logits, torch.tensor([[1.0, 2.0]])).backward()
    assert logits.grad.tolist() == [[-1.0, 1.0]]


def test_rglf_loss_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax (0.25, 0.75)
    lm = torch.tensor([[1.0, 1.5]])  # granularity 0 is best
    out = rglf_loss(logits, lm)
    assert out["loss_router_ce"].item() == pytest.approx(0.1 * -math.log(0.25))
    assert out["loss_router_rank"].item() == pytest.approx(0.5 + math.log(3.0))
    assert out["router_acc"].item() == 0.0
