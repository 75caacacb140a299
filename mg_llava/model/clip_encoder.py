"""Low-resolution branch: a frozen CLIP ViT that returns the patch tokens of one hidden layer, or of several."""
from typing import Sequence, Union

import torch
import torch.nn as nn
from transformers import CLIPVisionModel

from mg_llava.registry import MODELS


@MODELS.register_module()
class CLIPVisionEncoder(nn.Module):
    """``pixel_values`` (I, 3, S, S) -> tokens (I, T, C) with T = (S / patch)^2, e.g. (I, 576, 1024) for
    ViT-L/14-336; with several layers selected, (I, K, T, C), the K layers in the order given.

    Takes ``hidden_states[select_layer]`` (LLaVA-1.5 uses the penultimate layer; MMFuser reads
    ``(-22, -17, -12, -7, -2)``: four shallow layers and the query layer, all from the same forward pass) and drops
    the CLS token. Frozen: it never trains, runs without autograd and stays in eval mode under ``model.train()``.

    Args:
        pretrained_model_name_or_path: a ``CLIPVisionModel`` (or full CLIP) checkpoint.
        select_layer: index into ``hidden_states`` (0 = patch embeddings), or a sequence of indices.
        drop_cls: drop the leading CLS token.
        torch_dtype: dtype to load the weights in (default: as stored, usually float32).
    """

    def __init__(self, pretrained_model_name_or_path: str, select_layer: Union[int, Sequence[int]] = -2,
                 drop_cls: bool = True, torch_dtype=None):
        super().__init__()
        self.model = CLIPVisionModel.from_pretrained(pretrained_model_name_or_path, torch_dtype=torch_dtype)
        self.model.requires_grad_(False)
        self.model.eval()
        layers = [select_layer] if isinstance(select_layer, int) else list(select_layer)
        count = self.model.config.num_hidden_layers + 1  # the embeddings, then every layer
        bad = [i for i in layers if not -count <= i < count]
        if not layers or bad:
            raise ValueError(f"select_layer={select_layer}: this CLIP has {count} hidden states "
                             f"(indices {-count}..{count - 1}); out of range: {bad}")
        self.select_layer = select_layer if isinstance(select_layer, int) else tuple(layers)
        self.drop_cls = drop_cls

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_layers(self) -> int:
        """How many hidden layers the output holds (1: the output is (I, T, C))."""
        return 1 if isinstance(self.select_layer, int) else len(self.select_layer)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: never switch to training behaviour

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.model(pixel_values.to(self.dtype), output_hidden_states=True).hidden_states
        if isinstance(self.select_layer, int):
            tokens = hidden_states[self.select_layer]
        else:
            tokens = torch.stack([hidden_states[i] for i in self.select_layer], dim=1)
        return tokens[..., 1:, :] if self.drop_cls else tokens
