import pytest
import torch
import torch.nn.functional as F

from mg_llava.model.avg import VisualGranularityRouter, select_instruction_tokens, straight_through_hard_softmax

REAL_GRANULARITIES = (576, 288, 144, 72, 36)


def test_real_shapes_1148_tokens_and_one_decision_per_image():
    torch.manual_seed(0)
    width = 16  # the LLM width; 8 heads of 2
    router = VisualGranularityRouter(width, REAL_GRANULARITIES)
    assert router.voter.shape == (1148,)
    assert router.encoder.self_attn.num_heads == 8 and router.encoder.linear1.out_features == width
    assert not router.encoder.norm_first and router.mlp[-1].out_features == 5
    granularities = [torch.randn(3, n, width) for n in REAL_GRANULARITIES]
    logits = router(granularities, torch.randn(3, 32, width))
    assert logits.shape == (3, 5)
    choice, weights = router.eval().select(logits)
    assert choice.shape == (3,) and weights.sum(dim=1).tolist() == [1.0] * 3
    with pytest.raises(ValueError, match="built for granularities"):
        router(granularities[:4], torch.randn(3, 32, width))


def test_padded_instruction_slots_do_not_change_the_decision():
    torch.manual_seed(0)
    router = VisualGranularityRouter(8, (4, 1), num_instruction_tokens=4).eval()
    granularities = [torch.randn(1, 4, 8), torch.randn(1, 1, 8)]
    text = torch.randn(1, 4, 8)
    mask = torch.tensor([[True, True, False, False]])
    other = text.clone()
    other[:, 2:] = torch.randn(1, 2, 8) * 100
    torch.testing.assert_close(router(granularities, text, mask), router(granularities, other, mask))
    assert not torch.allclose(router(granularities, text), router(granularities, other))


def test_instruction_tokens_ranked_by_mean_cosine_kept_in_order():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # mean cosine to the two image tokens: 0.5, ~0.707, -0.5, 0.5 * (0.8 + 0.6) = 0.7
    text = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-3.0, 0.0], [0.8, 0.6]])
    torch.testing.assert_close(select_instruction_tokens(text, image, 2), text[[1, 3]])
    torch.testing.assert_close(select_instruction_tokens(text, image, 3), text[[0, 1, 3]])
    assert select_instruction_tokens(text, image, 32) is text


def test_straight_through_is_one_hot_forward_and_softmax_backward():
    logits = torch.tensor([[0.2, 1.5, -0.3]], requires_grad=True)
    weights = straight_through_hard_softmax(logits)
    assert weights.tolist() == [[0.0, 1.0, 0.0]]
    upstream = torch.tensor([[1.0, 2.0, 3.0]])
    (weights * upstream).sum().backward()
    p = F.softmax(logits.detach(), dim=-1)
    expected = p * (upstream - (p * upstream).sum())  # the softmax Jacobian applied to the upstream gradient
    torch.testing.assert_close(logits.grad, expected)


def test_select_is_straight_through_in_training_and_plain_argmax_at_inference():
    router = VisualGranularityRouter(8, (4, 1), num_instruction_tokens=2)
    logits = torch.tensor([[0.0, 1.0]], requires_grad=True)
    choice, weights = router.train().select(logits)
    assert choice.tolist() == [1] and weights.requires_grad
    choice, weights = router.eval().select(logits.detach())
    assert choice.tolist() == [1] and weights.tolist() == [[0.0, 1.0]] and not weights.requires_grad
