import pytest
import torch

from mg_llava.model.avg import VisualGranularityScaler


def explicit_pooling(tokens, side, kh, kw):
    """The pooled grid by loops: window (r, c) averages rows r*kh..r*kh+kh-1 and columns c*kw..c*kw+kw-1."""
    grid = tokens.view(tokens.shape[0], side, side, -1)
    out = []
    for r in range(side // kh):
        for c in range(side // kw):
            out.append(grid[:, r * kh:(r + 1) * kh, c * kw:(c + 1) * kw].mean(dim=(1, 2)))
    return torch.stack(out, dim=1)


def test_real_grid_gives_avg_llava_sizes_equal_to_explicit_pooling():
    scaler = VisualGranularityScaler()
    tokens = torch.randn(2, 576, 6, generator=torch.Generator().manual_seed(0))
    out = scaler(tokens)
    assert [t.shape for t in out] == [(2, n, 6) for n in (576, 288, 144, 72, 36)]
    assert scaler.token_counts(576) == [576, 288, 144, 72, 36]
    for (kh, kw), pooled in zip(scaler.pools, out):
        torch.testing.assert_close(pooled, explicit_pooling(tokens, 24, kh, kw))


def test_pool_rows_and_columns_are_not_swapped():
    # token value = its column index: pooling 1 row x 2 columns averages columns (2c, 2c+1) -> 2c + 0.5
    tokens = torch.arange(4.0).repeat(4)[None, :, None]  # 4x4 grid, row-major
    scaler = VisualGranularityScaler(pools=[(1, 2), (2, 1)])
    wide, tall = scaler(tokens)
    assert wide.flatten().tolist() == [0.5, 2.5] * 4
    assert tall.flatten().tolist() == [0.0, 1.0, 2.0, 3.0] * 2


@pytest.mark.parametrize("tokens", [15, 18], ids=["not_square", "not_divisible"])
def test_bad_grids_fail_with_the_sizes(tokens):
    scaler = VisualGranularityScaler(pools=[(1, 1), (2, 2)])
    with pytest.raises(ValueError, match=str(tokens) if tokens == 15 else "cannot be pooled"):
        scaler(torch.zeros(1, tokens if tokens == 15 else 9, 2))
