import pytest
import torch

from mg_llava.model.avg import VisualGranularityRouter, select_instruction_tokens

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
    choice = router.eval().select(logits)
    assert choice.tolist() == logits.argmax(dim=1).tolist() and choice.shape == (3,)
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


def test_views_are_averaged_before_the_norm_per_image():
    """A tiled image's views (global + crops) are scored with the same instruction and their voter sums averaged
    before the LayerNorm: two images of 1 and 3 views equal the per-view pre-norm logits averaged by hand."""
    torch.manual_seed(0)
    router = VisualGranularityRouter(8, (4, 1), num_instruction_tokens=2).eval()
    with torch.no_grad():
        router.norm.weight.uniform_(0.5, 2.0)
        router.norm.bias.uniform_(-1.0, 1.0)
    granularities = [torch.randn(4, 4, 8), torch.randn(4, 1, 8)]  # rows: image 0 (1 view), image 1 (3 views)
    text = torch.randn(4, 2, 8)
    text[2:] = text[1]  # the same instruction for each view of image 1
    logits = router(granularities, text, views=[1, 3])
    norm, router.norm = router.norm, torch.nn.Identity()
    per_view = router(granularities, text)  # (4, 2) before the norm
    router.norm = norm
    expected = norm(torch.stack([per_view[0], per_view[1:].mean(dim=0)]))
    torch.testing.assert_close(logits, expected)
    global_only = router([g[[0, 1]] for g in granularities], text[[0, 1]])
    assert logits.shape == (2, 2) and not torch.allclose(logits[1], global_only[1])
    torch.testing.assert_close(logits[0], global_only[0])
    with pytest.raises(ValueError, match="do not split"):
        router(granularities, text, views=[1, 2])


def test_views_setting_is_checked():
    assert VisualGranularityRouter(8, (4, 1), views="global").views == "global"
    with pytest.raises(ValueError, match="views must be one of"):
        VisualGranularityRouter(8, (4, 1), views="crops")


def test_select_is_the_argmax():
    assert VisualGranularityRouter.select(torch.tensor([[0.0, 1.0], [2.0, -1.0]])).tolist() == [1, 0]
