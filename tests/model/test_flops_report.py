import os
import runpy

import pytest
import torch

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "flops_report.py")


@pytest.fixture(scope="module")
def tool():
    return runpy.run_path(TOOL, run_name="flops_report")


def test_vision_side_counts(tool):
    parts, tokens = tool["vision_components"](boxes=10)
    assert tokens == 576
    clip_params, clip_macs = parts["clip"]
    assert clip_params == 303_507_456  # CLIPVisionModel ViT-L/14-336
    assert clip_macs == pytest.approx(382e9 / 2, rel=0.01)  # SPEC 5: ~382 GFLOPs
    assert parts["convnext"][1] == pytest.approx(808e9 / 2, rel=0.01)  # SPEC 5: ~808 GFLOPs at 768
    c, c_s, g = 1024, 1536, 512  # Conv-Gate: 1x1, 1x1, depthwise 7x7, 1x1 over 576 tokens; the gate once
    assert parts["fusion"][1] == tokens * (c_s * c_s + c_s * c + c * 49 + c * c) + 2 * c * g + g
    assert parts["roi_align"][1] == (384 + 768 + 1536) * 192 * 192 * 4 + 10 * 2880 * 56 * 56 * 5
    # MMFuser, 16 heads, 4 points: cross-attention over 4 levels, self-attention over 1, 3 LayerNorms, 2 scales
    heads, points, t = 16, 4, tokens
    attention = lambda levels: c * heads * levels * points * 3 + heads * levels * points * 3 + 2 * (c * c + c)  # noqa
    assert parts["mmfuser"][0] == attention(4) + attention(1) + 3 * 2 * c + 2 * c
    projections = t * c * (4 * c + heads * points * 4 * 3 + c) + t * c * (c + heads * points * 3 + c)
    assert parts["mmfuser"][1] == projections + t * (4 + 1) * points * c * 5


def test_llm_counted_from_its_config(tool):
    params, macs = tool["count"](lambda: tool["build_llm"]("Vicuna-7B"),
                                 lambda: (torch.zeros(1, 100, dtype=torch.long),), fake=True)
    assert params == 6_738_415_616  # Vicuna-7B v1.5
    embeddings = 32000 * 4096
    # every matrix but the input embedding is used once per token, plus attention: QK^T and AV, L^2 d each per layer
    assert macs == pytest.approx(100 * (params - embeddings) + 32 * 2 * 100 * 100 * 4096, rel=1e-3)
