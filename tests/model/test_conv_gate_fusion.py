import pytest
import torch
import torch.nn.functional as F

from mg_llava.model import ConvGateFusion
from mg_llava.registry import MODELS

SPEC4_SHAPES = {  # SPEC 4, for CLIP ViT-L (1024) and ConvNeXt-L (1536)
    "slow_conv.weight": (1536, 1536, 1, 1), "slow_conv.bias": (1536,),
    "slow_proj.weight": (1024, 1536, 1, 1), "slow_proj.bias": (1024,),
    "fast_conv.weight": (1024, 1, 7, 7), "fast_conv.bias": (1024,),
    "fast_proj.weight": (1024, 1024, 1, 1), "fast_proj.bias": (1024,),
    "gate.0.weight": (512, 2048), "gate.0.bias": (512,),
    "gate.2.weight": (1, 512), "gate.2.bias": (1,),
}


def randomized(fusion, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in fusion.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return fusion


def reference(fusion, low, high):
    """SPEC 1.4 written out with the functional ops."""
    side = high.shape[-1]
    grid = low.transpose(1, 2).reshape(low.shape[0], -1, side, side)
    hf = F.conv2d(F.gelu(F.conv2d(high, fusion.slow_conv.weight, fusion.slow_conv.bias)),
                  fusion.slow_proj.weight, fusion.slow_proj.bias).flatten(2).transpose(1, 2)
    lf_grid = F.conv2d(F.gelu(F.conv2d(grid, fusion.fast_conv.weight, fusion.fast_conv.bias, padding=3,
                                       groups=grid.shape[1])), fusion.fast_proj.weight, fusion.fast_proj.bias)
    lf = low + lf_grid.flatten(2).transpose(1, 2)
    pooled = torch.cat([lf, hf], dim=-1).mean(dim=1)
    g = F.linear(F.gelu(F.linear(pooled, fusion.gate[0].weight, fusion.gate[0].bias)),
                 fusion.gate[2].weight, fusion.gate[2].bias)
    return lf + hf * torch.tanh(g)[:, :, None]


def test_released_parameter_names_and_shapes():
    with torch.device("meta"):
        fusion = ConvGateFusion(low_channels=1024, high_channels=1536)
    assert {k: tuple(v.shape) for k, v in fusion.state_dict().items()} == SPEC4_SHAPES


def test_identity_at_init():
    fusion = MODELS.build(dict(type="ConvGateFusion", low_channels=32, high_channels=320))
    low, high = torch.randn(2, 16, 32), torch.randn(2, 320, 4, 4)
    out = fusion(low, high)
    assert out.shape == (2, 16, 32)
    torch.testing.assert_close(out, low, rtol=0, atol=0)
    assert fusion.slow_conv.weight.abs().sum() > 0 and not fusion.slow_conv.bias.any()  # xavier, zero bias


def test_matches_formula_with_one_gate_per_image():
    fusion = randomized(ConvGateFusion(32, 64))
    low, high = torch.randn(3, 16, 32), torch.randn(3, 64, 4, 4)
    out = fusion(low, high)
    torch.testing.assert_close(out, reference(fusion, low, high), rtol=1e-5, atol=1e-6)
    # Images do not mix: changing image 2 leaves images 0 and 1 alone.
    high2 = high.clone()
    high2[2] += 1
    torch.testing.assert_close(fusion(low, high2)[:2], out[:2], rtol=0, atol=0)


def test_every_parameter_gets_a_gradient():
    fusion = randomized(ConvGateFusion(32, 64))
    fusion(torch.randn(2, 16, 32), torch.randn(2, 64, 4, 4)).square().sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bfloat16_weights_cast_inputs():
    fusion = randomized(ConvGateFusion(32, 64))
    low, high = torch.randn(2, 16, 32), torch.randn(2, 64, 4, 4)
    expected = fusion(low, high)
    out = fusion.to(torch.bfloat16)(low, high)  # float32 features into bfloat16 weights
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


def test_grid_mismatch_names_both_sizes():
    fusion = ConvGateFusion(32, 64)
    with pytest.raises(ValueError, match="15 low-res tokens .* 4x4"):
        fusion(torch.randn(1, 15, 32), torch.randn(1, 64, 4, 4))
