import torch

from mg_llava.model import PerceiverResampler
from mg_llava.registry import MODELS


def resampler(**kwargs):
    torch.manual_seed(0)
    args = dict(type="PerceiverResampler", low_channels=16, high_channels=24, grid_tokens=4, depth=2, num_heads=4)
    return MODELS.build(dict(args, **kwargs)).eval()


def inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 16, generator=generator), torch.randn(2, 24, 2, 2, generator=generator)


def test_one_latent_per_grid_token_by_default_or_as_configured():
    low, high = inputs()
    module = resampler()
    assert module.num_tokens == 4 and module(low, high).shape == (2, 4, 16)
    module = resampler(num_latents=3)
    assert module.num_tokens == 3 and module(low, high).shape == (2, 3, 16) and module.out_channels == 16


def test_output_ignores_the_order_of_the_input_tokens():
    module = resampler()
    low, high = inputs()
    out = module(low, high)
    shuffled_low = low[:, torch.tensor([2, 0, 3, 1])]
    shuffled_high = high.flatten(2)[:, :, torch.tensor([3, 1, 0, 2])].reshape(high.shape)
    torch.testing.assert_close(module(shuffled_low, shuffled_high), out, rtol=1e-5, atol=1e-6)
    # ... but it reads their content, low-res and high-res alike
    assert not torch.allclose(module(low + 1, high), out)
    assert not torch.allclose(module(low, high + 1), out)


def test_latents_attend_to_each_other_and_permute_with_the_output():
    module = resampler()
    low, high = inputs()
    out = module(low, high)
    order = torch.tensor([1, 3, 0, 2])
    with torch.no_grad():
        module.latents.copy_(module.latents[order])
    torch.testing.assert_close(module(low, high), out[:, order], rtol=1e-5, atol=1e-6)
    # Changing latent 0 changes the others' outputs: they attend to it (keys/values = concat(features, latents))
    with torch.no_grad():
        module.latents[0] += 1
    changed = module(low, high)
    assert not torch.allclose(changed[:, 1:], out[:, order][:, 1:])


def test_images_are_resampled_independently_and_every_weight_trains():
    module = resampler()
    low, high = inputs()
    out = module(low, high)
    torch.testing.assert_close(module(low[1:], high[1:]), out[1:], rtol=1e-5, atol=1e-6)
    module.train()
    module(low, high).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert isinstance(module, PerceiverResampler)
