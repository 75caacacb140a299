import json
import os.path as osp

import open_clip
import torch

from mg_llava.model import OpenCLIPConvNeXtEncoder
from mg_llava.registry import MODELS
from mg_llava.testing.tiny_models import HIGH_RES


def test_returns_every_stage_map(tiny_models):
    encoder = MODELS.build(dict(type="OpenCLIPConvNeXtEncoder", model_name="local-dir:" + tiny_models["convnext"]))
    assert encoder.out_channels == [40, 80, 160, 320]
    maps = encoder(torch.randn(2, 3, HIGH_RES, HIGH_RES))
    assert [tuple(m.shape) for m in maps] == [(2, 40, 32, 32), (2, 80, 16, 16), (2, 160, 8, 8), (2, 320, 4, 4)]


def test_trunk_only_frozen_and_eval_under_train(tiny_models):
    encoder = OpenCLIPConvNeXtEncoder("local-dir:" + tiny_models["convnext"])
    names = [n for n, _ in encoder.named_parameters()]
    assert names and all(n.startswith(("stem.", "stages.")) for n in names)
    assert not any(p.requires_grad for p in encoder.parameters())
    torch.nn.Sequential(encoder).train()  # as the runner does on the whole model
    assert not any(m.training for m in encoder.modules())
    # The trunk has stochastic depth 0.1: were it in train mode, two passes would differ.
    pixels = torch.randn(1, 3, HIGH_RES, HIGH_RES)
    torch.testing.assert_close(encoder(pixels)[-1], encoder(pixels)[-1], rtol=0, atol=0)


def test_model_name_with_weights_file(tiny_models, tmp_path):
    """The released form: an open_clip model name plus a local open_clip_pytorch_model.bin."""
    with open(osp.join(tiny_models["convnext"], "open_clip_config.json")) as f:
        model_cfg = json.load(f)["model_cfg"]
    with open(tmp_path / "tiny_convnext_test.json", "w") as f:
        json.dump(model_cfg, f)
    open_clip.add_model_config(str(tmp_path / "tiny_convnext_test.json"))
    weights = osp.join(tiny_models["convnext"], "open_clip_pytorch_model.bin")
    by_name = OpenCLIPConvNeXtEncoder("tiny_convnext_test", pretrained=weights)
    by_dir = OpenCLIPConvNeXtEncoder("local-dir:" + tiny_models["convnext"])
    for (name, a), (_, b) in zip(by_name.state_dict().items(), by_dir.state_dict().items()):
        assert torch.equal(a, b), name
