import pytest
import torch
import torch.nn.functional as F

from mg_llava.model import PatchInfoMining
from mg_llava.model.patch_info_mining import concat_stages, region_patches
from mg_llava.registry import MODELS

STAGES = [8, 12, 16]  # channels of three stages: 8x8, 4x4, 2x2 maps over a 2x2 low-res grid (M = 4)


def stage_maps(images=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(images, c, 8 // 2 ** k, 8 // 2 ** k, generator=generator) for k, c in enumerate(STAGES)]


def trained_module():
    """Non-zero value projection (at init it is zero: the module is then the identity)."""
    torch.manual_seed(0)
    module = MODELS.build(dict(type="PatchInfoMining", low_channels=16, high_channels=STAGES))
    torch.nn.init.normal_(module.value[1].weight)
    return module


def test_identity_at_init_and_shapes():
    module = MODELS.build(dict(type=PatchInfoMining, low_channels=16, high_channels=STAGES))
    low = torch.randn(2, 4, 16)
    out = module(low, stage_maps())
    assert out.shape == (2, 4, 16) and module.out_channels == 16
    torch.testing.assert_close(out, low, rtol=0, atol=0)


def test_regions_are_each_cells_sub_grid():
    high = torch.arange(2 * 3 * 4 * 6, dtype=torch.float).reshape(2, 3, 4, 6)  # 2x3 low-res cells, M = 2
    regions = region_patches(high, 2, 3)
    assert regions.shape == (2, 6, 4, 3)
    # cell 4 = row 1, column 1: high-res rows 2-3, columns 2-3, row-major
    expected = high[:, :, 2:4, 2:4].flatten(2).transpose(1, 2)
    torch.testing.assert_close(regions[:, 4], expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not split"):
        region_patches(high, 3, 3)


def test_candidates_are_stages_resized_to_the_finest():
    maps = stage_maps()
    high = concat_stages(maps)
    assert high.shape == (2, sum(STAGES), 8, 8)
    torch.testing.assert_close(high[:, :8], maps[0], rtol=0, atol=0)
    torch.testing.assert_close(high[:, 20:], F.interpolate(maps[2], size=(8, 8), mode="bilinear"), rtol=0, atol=0)


def test_a_token_reads_only_its_own_region():
    module = trained_module()
    low, maps = torch.randn(2, 4, 16), stage_maps()
    out = module(low, maps)
    assert not torch.allclose(out, low)
    # Change the finest stage outside cell 0's region (rows 0-3, columns 0-3 of the 8x8 map): token 0 is unchanged,
    # tokens 1-3 change.
    perturbed = [m.clone() for m in maps]
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[:4, :4] = False
    perturbed[0][:, :, outside] += 5 * torch.randn_like(perturbed[0][:, :, outside])
    changed = module(low, perturbed)
    torch.testing.assert_close(changed[:, 0], out[:, 0], rtol=0, atol=0)
    for token in (1, 2, 3):
        assert not torch.allclose(changed[:, token], out[:, token])
    # Inside the region it does change
    perturbed[0][:, :, 1, 2] += 5
    assert not torch.allclose(module(low, perturbed)[:, 0], out[:, 0])


def test_gradients_reach_every_projection():
    module = trained_module()
    module(torch.randn(2, 4, 16), stage_maps()).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_refuses_maps_that_disagree():
    module = trained_module()
    with pytest.raises(ValueError, match=r"channels \[8, 12\]"):
        module(torch.randn(2, 4, 16), stage_maps()[:2])
    with pytest.raises(ValueError, match="square grid"):
        module(torch.randn(2, 5, 16), stage_maps())
    with pytest.raises(TypeError, match="every high-res stage"):
        PatchInfoMining(16, 16)
