import torch

from mg_llava.model import BoxToFusedCrossAttention, FusedToBoxCrossAttention
from mg_llava.model.object_cross_attention import pad_boxes
from mg_llava.registry import MODELS

FUSED, BOX = 16, 24


def trained(kind):
    """The module with a non-zero output projection (it starts at zero: identity at init)."""
    torch.manual_seed(0)
    module = MODELS.build(dict(type=kind, fused_channels=FUSED, box_channels=BOX, num_heads=4))
    torch.nn.init.normal_(module.block.attention.out_proj.weight)
    return module


def features(counts, seed=0):
    generator = torch.Generator().manual_seed(seed)
    fused = torch.randn(len(counts), 6, FUSED, generator=generator)
    return fused, [torch.randn(n, BOX, generator=generator) for n in counts]


def test_pad_boxes_masks_the_padding():
    padded, padding = pad_boxes([torch.ones(2, 3), torch.ones(0, 3), torch.ones(3, 3)])
    assert padded.shape == (3, 3, 3)
    assert padding.tolist() == [[False, False, True], [True, True, True], [False, False, False]]


def test_identity_at_init():
    fused, boxes = features([2, 3])
    for kind in (FusedToBoxCrossAttention, BoxToFusedCrossAttention):
        module = MODELS.build(dict(type=kind, fused_channels=FUSED, box_channels=BOX, num_heads=4))
        out_fused, out_boxes = module(fused, boxes)
        torch.testing.assert_close(out_fused, fused, rtol=0, atol=0)
        if out_boxes is not None:
            for a, b in zip(out_boxes, boxes):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_f_to_b_fused_tokens_read_their_own_images_boxes_and_no_padding():
    module = trained(FusedToBoxCrossAttention)
    fused, boxes = features([1, 3, 0])
    out, no_boxes = module(fused, boxes)
    assert no_boxes is None and out.shape == fused.shape and not module.appends_boxes
    # each image as if alone: the padding of image 0 (2 rows, as image 1 has 3 boxes) changes nothing
    for i in (0, 1):
        alone, _ = module(fused[i:i + 1], boxes[i:i + 1])
        torch.testing.assert_close(out[i:i + 1], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[:2], fused[:2])
    # an image without boxes keeps its tokens, finite
    torch.testing.assert_close(out[2], fused[2], rtol=0, atol=0)
    # another image's boxes do not reach it
    boxes[1] = boxes[1] + 3
    torch.testing.assert_close(module(fused, boxes)[0][0], out[0], rtol=1e-5, atol=1e-6)


def test_f_to_b_gradients_are_finite_with_an_image_without_boxes():
    module = trained(FusedToBoxCrossAttention)
    fused, boxes = features([2, 0])
    fused.requires_grad_(True)
    module(fused, boxes)[0].square().sum().backward()
    grads = [p.grad for p in module.parameters()] + [fused.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert module.block.attention.in_proj_weight is None  # kdim != embed dim: separate q, k, v projections
    assert module.block.attention.k_proj_weight.shape == (FUSED, BOX)


def test_b_to_f_box_tokens_read_their_own_images_fused_tokens():
    module = trained(BoxToFusedCrossAttention)
    fused, boxes = features([1, 3, 0])
    out_fused, out_boxes = module(fused, boxes)
    assert module.appends_boxes and out_fused is fused
    assert [tuple(b.shape) for b in out_boxes] == [(1, BOX), (3, BOX), (0, BOX)]
    for i in (0, 1):
        torch.testing.assert_close(module(fused[i:i + 1], boxes[i:i + 1])[1][0], out_boxes[i], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out_boxes[i], boxes[i])
    changed = fused.clone()
    changed[1] += 3
    _, again = module(changed, boxes)
    torch.testing.assert_close(again[0], out_boxes[0], rtol=0, atol=0)
    assert not torch.allclose(again[1], out_boxes[1])


def test_b_to_f_without_any_box():
    module = trained(BoxToFusedCrossAttention)
    fused, boxes = features([0, 0])
    _, out_boxes = module(fused, boxes)
    assert [tuple(b.shape) for b in out_boxes] == [(0, BOX), (0, BOX)]
