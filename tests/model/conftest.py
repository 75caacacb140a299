"""Shared builders for the model tests: a tiny MG-LLaVA from the session's tiny checkpoints, batches, and
released-format checkpoints."""
import copy
import os
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM
from xtuner.utils import IMAGE_TOKEN_INDEX

from mg_llava.model import (
    CLIPVisionEncoder,
    ConvGateFusion,
    MGLLaVAModel,
    MultiScaleRoIFeatures,
    OpenCLIPConvNeXtEncoder,
)
from mg_llava.testing.tiny_models import HIGH_RES, LOW_RES
from mg_llava.testing.released import released_shapes

def llm_config(path):
    # XTuner reads the LLM config with attribute access, as from a parsed config file.
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path)


@pytest.fixture(scope="session")
def make_model(tiny_models):
    """``make_model(**overrides)`` -> a fresh tiny MGLLaVAModel (Conv-Gate, object tokens, stage 2 unless
    overridden). Loading is the slow part, so the encoders are loaded once and each configuration is built once;
    callers get deep copies. Pass ``visual_encoder``/``visual_encoder_aux`` configs to build those from config."""
    encoders = dict(
        visual_encoder=CLIPVisionEncoder(tiny_models["clip"]),
        visual_encoder_aux=OpenCLIPConvNeXtEncoder("local-dir:" + tiny_models["convnext"]),
    )
    built = {}

    def make(llm="llm_vicuna", **overrides):
        key = repr((llm, sorted(overrides.items())))
        if key not in built:
            kwargs = dict(
                llm=llm_config(tiny_models[llm]),
                **{name: copy.deepcopy(encoder) for name, encoder in encoders.items()},
                fusion=dict(type=ConvGateFusion),
                object_features=dict(type=MultiScaleRoIFeatures, channel_chunk=64, box_chunk=4),
                freeze_llm=False,
                use_activation_checkpointing=False,
            )
            kwargs.update(overrides)
            torch.manual_seed(0)
            built[key] = MGLLaVAModel(**kwargs)
        return copy.deepcopy(built[key])

    return make


@pytest.fixture(scope="session")
def make_batch():
    return build_batch


@pytest.fixture(scope="session")
def make_boxes():
    return random_boxes


def build_batch(texts, box_counts, seed=0, pad_id=0):
    """A batch in the docs/interfaces.md contract.

    ``texts``: one list of token ids per sample, ``IMAGE_TOKEN_INDEX`` marking images; ``box_counts``: N_i per
    image, in order.
    Labels are the ids themselves (-100 on images and padding).
    """
    generator = torch.Generator().manual_seed(seed)
    length = max(len(t) for t in texts)
    input_ids = torch.full((len(texts), length), pad_id)
    attention_mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for b, text in enumerate(texts):
        input_ids[b, :len(text)] = torch.tensor(text)
        attention_mask[b, :len(text)] = True
    labels = torch.where(attention_mask & (input_ids != IMAGE_TOKEN_INDEX), input_ids, -100)
    data = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    if box_counts:
        count = len(box_counts)
        data["pixel_values"] = torch.randn(count, 3, LOW_RES, LOW_RES, generator=generator)
        data["pixel_values_aux"] = torch.randn(count, 3, HIGH_RES, HIGH_RES, generator=generator)
        data["boxes"] = [random_boxes(n, HIGH_RES, generator) for n in box_counts]
    return data


def random_boxes(count, size, generator):
    """(count, 4) xyxy boxes inside a ``size`` square, at least 2 px wide and tall."""
    corners = torch.rand(count, 2, generator=generator) * (size - 4)
    sides = 2 + torch.rand(count, 2, generator=generator) * (size - 2 - corners)
    return torch.cat([corners, corners + sides], dim=1)


@pytest.fixture(scope="session")
def released():
    """Synthesised released checkpoints (SPEC 4 keys, shapes of the tiny model) and writers for each file layout."""
    return SimpleNamespace(shapes=RELEASED_SHAPES, state_dict=released_state_dict, save_plain=save_plain,
                           save_mmengine_ddp=save_mmengine_ddp, save_deepspeed=save_deepspeed)


RELEASED_SHAPES = released_shapes()  # SPEC 4 keys at the tiny models' sizes


def released_state_dict(seed=0, dtype=torch.bfloat16):
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=generator).to(dtype) for k, s in RELEASED_SHAPES.items()}


def save_plain(state_dict, root):
    path = os.path.join(root, "plain.pth")
    torch.save(state_dict, path)
    return path


def save_mmengine_ddp(state_dict, root):
    path = os.path.join(root, "mmengine.pth")
    torch.save(dict(meta=dict(epoch=1, iter=100), state_dict={"module." + k: v for k, v in state_dict.items()}),
               path)
    return path


def save_deepspeed(state_dict, root):
    folder = os.path.join(root, "iter_100.pth")
    os.makedirs(os.path.join(folder, "global_step100"))
    with open(os.path.join(folder, "latest"), "w") as f:
        f.write("global_step100")
    torch.save(dict(module=state_dict, ds_version="0.16.2", mp_world_size=1, buffer_names=[],
                    param_shapes=[{k: torch.Size(v.shape) for k, v in state_dict.items()}]),
               os.path.join(folder, "global_step100", "mp_rank_00_model_states.pt"))
    return folder
