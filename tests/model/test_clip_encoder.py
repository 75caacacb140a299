import pytest
import torch
from transformers import CLIPVisionModel

from mg_llava.model import CLIPVisionEncoder
from mg_llava.registry import MODELS
from mg_llava.testing.tiny_models import CLIP_PATCH, LOW_RES

GRID = (LOW_RES // CLIP_PATCH) ** 2


def test_penultimate_layer_without_cls(tiny_models):
    encoder = MODELS.build(dict(type="CLIPVisionEncoder", pretrained_model_name_or_path=tiny_models["clip"]))
    reference = CLIPVisionModel.from_pretrained(tiny_models["clip"])
    pixels = torch.randn(2, 3, LOW_RES, LOW_RES)
    tokens = encoder(pixels)
    assert tokens.shape == (2, GRID, encoder.hidden_size) and encoder.hidden_size == 32
    expected = reference(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    torch.testing.assert_close(tokens, expected, rtol=0, atol=0)


def test_layer_and_cls_from_config(tiny_models):
    encoder = CLIPVisionEncoder(tiny_models["clip"], select_layer=-1, drop_cls=False)
    reference = CLIPVisionModel.from_pretrained(tiny_models["clip"])
    pixels = torch.randn(1, 3, LOW_RES, LOW_RES)
    tokens = encoder(pixels)
    assert tokens.shape == (1, GRID + 1, 32)
    torch.testing.assert_close(tokens, reference(pixels, output_hidden_states=True).hidden_states[-1])


def test_frozen_eval_and_casts_input(tiny_models):
    encoder = CLIPVisionEncoder(tiny_models["clip"], torch_dtype=torch.bfloat16)
    encoder.train()
    assert not encoder.training and not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    tokens = encoder(torch.randn(1, 3, LOW_RES, LOW_RES))  # float32 pixels into a bfloat16 model
    assert tokens.dtype == torch.bfloat16 and not tokens.requires_grad


def test_several_layers_from_one_forward_pass(tiny_models):
    encoder = CLIPVisionEncoder(tiny_models["clip_deep"], select_layer=[-6, -4, -2])  # MMFuser-style selection
    reference = CLIPVisionModel.from_pretrained(tiny_models["clip_deep"])
    calls = []
    encoder.model.vision_model.embeddings.register_forward_hook(lambda *args: calls.append(1))
    pixels = torch.randn(2, 3, LOW_RES, LOW_RES)
    tokens = encoder(pixels)
    assert tokens.shape == (2, 3, GRID, 32) and encoder.num_layers == 3 and len(calls) == 1
    hidden_states = reference(pixels, output_hidden_states=True).hidden_states
    for k, layer in enumerate((-6, -4, -2)):
        torch.testing.assert_close(tokens[:, k], hidden_states[layer][:, 1:], rtol=0, atol=0)
    assert CLIPVisionEncoder(tiny_models["clip_deep"]).num_layers == 1
    with pytest.raises(ValueError, match=r"7 hidden states .* out of range: \[-8\]"):
        CLIPVisionEncoder(tiny_models["clip_deep"], select_layer=(-8, -2))
