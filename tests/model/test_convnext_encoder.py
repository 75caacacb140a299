import json
import os.path as osp

import open_clip
import pytest
import torch

from mg_llava.model import OpenCLIPConvNeXtEncoder
from mg_llava.registry import MODELS
from mg_llava.testing.tiny_models import HIGH_RES


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return MODELS.build(dict(type="OpenCLIPConvNeXtEncoder", model_name="local-dir:" + tiny_models["convnext"]))


def test_returns_every_stage_map(encoder):
    assert encoder.out_channels == [40, 80, 160, 320]
    maps = encoder(torch.randn(2, 3, HIGH_RES, HIGH_RES))
    assert [tuple(m.shape) for m in maps] == [(2, 40, 32, 32), (2, 80, 16, 16), (2, 160, 8, 8), (2, 320, 4, 4)]


def test_trunk_only_frozen_and_eval_under_train(encoder):
    names = [n for n, _ in encoder.named_parameters()]
    assert names and all(n.startswith(("stem.", "stages.")) for n in names)
    assert not any(p.requires_grad for p in encoder.parameters())
    torch.nn.Sequential(encoder).train()  # as the runner does on the whole model
    assert not any(m.training for m in encoder.modules())
    # The trunk has stochastic depth 0.1: were it in train mode, two passes would differ.
    pixels = torch.randn(1, 3, HIGH_RES, HIGH_RES)
    torch.testing.assert_close(encoder(pixels)[-1], encoder(pixels)[-1], rtol=0, atol=0)


def test_model_name_with_weights_file(tiny_models, encoder, tmp_path):
    """The released form: an open_clip model name plus a local open_clip_pytorch_model.bin."""
    with open(osp.join(tiny_models["convnext"], "open_clip_config.json")) as f:
        model_cfg = json.load(f)["model_cfg"]
    with open(tmp_path / "tiny_convnext_test.json", "w") as f:
        json.dump(model_cfg, f)
    open_clip.add_model_config(str(tmp_path / "tiny_convnext_test.json"))
    weights = osp.join(tiny_models["convnext"], "open_clip_pytorch_model.bin")
    by_name = OpenCLIPConvNeXtEncoder("tiny_convnext_test", pretrained=weights)
    for (name, a), (_, b) in zip(by_name.state_dict().items(), encoder.state_dict().items()):
        assert torch.equal(a, b), name
