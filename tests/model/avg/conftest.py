"""A tiny AVG-LLaVA on MG-LLaVA (Conv-Gate, object tokens) or on plain LLaVA, built once per configuration."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM

from mg_llava.model import (
    AVGLLaVAModel,
    CLIPVisionEncoder,
    ConvGateFusion,
    MultiScaleRoIFeatures,
    NoFusion,
    OpenCLIPConvNeXtEncoder,
)


@pytest.fixture(scope="session")
def make_avg(tiny_models):
    """``make_avg(plain=False, **overrides)`` -> a fresh tiny AVGLLaVAModel (deep copy of a cached build).
    The tiny grid is 4x4, so the granularities have 16, 8, 4, 2 and 1 tokens."""
    clip = CLIPVisionEncoder(tiny_models["clip"])
    convnext = OpenCLIPConvNeXtEncoder("local-dir:" + tiny_models["convnext"])
    built = {}

    def make(plain=False, **overrides):
        key = repr((plain, sorted(overrides.items())))
        if key not in built:
            kwargs = dict(
                llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                               pretrained_model_name_or_path=tiny_models["llm_vicuna"]),
                visual_encoder=copy.deepcopy(clip),
                visual_encoder_aux=None if plain else copy.deepcopy(convnext),
                fusion=dict(type=NoFusion if plain else ConvGateFusion),
                object_features=None if plain else dict(type=MultiScaleRoIFeatures, output_size=2),
                freeze_llm=False,
                use_activation_checkpointing=False,
            )
            kwargs.update(overrides)
            torch.manual_seed(0)
            built[key] = AVGLLaVAModel(**kwargs)
        return copy.deepcopy(built[key])

    return make
