import pytest
import torch

from mg_llava.model import ChannelConcatFusion, NoFusion
from mg_llava.registry import MODELS


def test_no_fusion_passes_low_res_tokens():
    fusion = MODELS.build(dict(type="NoFusion", low_channels=32, high_channels=320))
    low = torch.randn(2, 16, 32)
    assert fusion(low, None) is low and fusion.out_channels == 32
    assert not list(fusion.parameters()) and not NoFusion.uses_high_res


def test_channel_concat_appends_high_res_channels():
    fusion = MODELS.build(dict(type=ChannelConcatFusion, low_channels=32, high_channels=320))
    low, high = torch.randn(2, 16, 32), torch.randn(2, 320, 4, 4)
    out = fusion(low, high)
    assert out.shape == (2, 16, 352) and fusion.out_channels == 352
    torch.testing.assert_close(out[..., :32], low, rtol=0, atol=0)
    # token t = row-major cell (t // 4, t % 4) of the 4x4 map
    torch.testing.assert_close(out[:, 6, 32:], high[:, :, 1, 2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="9 low-res tokens"):
        fusion(torch.randn(2, 9, 32), high)
