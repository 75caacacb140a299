import os
import runpy

import pytest

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "flops_table5.py")
C, STAGES, T, BOXES = 1024, [192, 384, 768, 1536], 576, 10
C_B, FINEST = sum(STAGES), 192  # object feature width; ConvNeXt-L stage 0 at 768 px


@pytest.fixture(scope="module")
def tool():
    return runpy.run_path(TOOL, run_name="flops_table5")


def test_patch_info_mining_counts_its_regions(tool):
    params, macs, channels, tokens = tool["count_fusion"](tool["PatchInfoMining"], T)
    assert (channels, tokens) == (C, T)
    assert params == 2 * C + C * C + C + 2 * (2 * C_B + C_B * C + C)
    # query over the grid; keys and values over every high-res position; each token against its 8x8 = 64 patches;
    # the three coarser stages resized to 192x192
    positions = FINEST * FINEST
    assert macs == T * C * C + 2 * positions * C_B * C + 2 * T * 64 * C + sum(STAGES[1:]) * positions * 4


def test_resampler_counts_latents_over_both_resolutions(tool):
    params, macs, channels, tokens = tool["count_fusion"](tool["PerceiverResampler"], T)
    assert (channels, tokens) == (C, T)
    keys = T + T + T  # low-res tokens, the 24x24 last stage, the latents
    layer = T * C * C + 2 * keys * C * C + 2 * T * keys * C + T * C * C + 2 * T * C * 4 * C
    assert macs == T * STAGES[-1] * C + 6 * layer


@pytest.mark.parametrize("kind", ["FusedToBoxCrossAttention", "BoxToFusedCrossAttention"])
def test_cross_attention_counts_queries_against_the_other_side(tool, kind):
    params, macs = tool["count_merge"](tool[kind], C, T, BOXES)
    (q, n_q), (kv, n_kv) = ((C, T), (C_B, BOXES)) if kind.startswith("Fused") else ((C_B, BOXES), (C, T))
    assert params == 2 * q + 2 * kv + q * q + 2 * q * kv + 3 * q + q * q + q
    assert macs == n_q * q * q + 2 * n_kv * kv * q + 2 * n_q * n_kv * q + n_q * q * q
