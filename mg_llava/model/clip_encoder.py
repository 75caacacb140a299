"""Low-resolution branch: a frozen CLIP ViT that returns the patch tokens of one hidden layer."""
import torch
import torch.nn as nn
from transformers import CLIPVisionModel

from mg_llava.registry import MODELS


@MODELS.register_module()
class CLIPVisionEncoder(nn.Module):
    """``pixel_values`` (I, 3, S, S) -> tokens (I, (S / patch)^2, C), e.g. (I, 576, 1024) for ViT-L/14-336.

    Takes ``hidden_states[select_layer]`` (LLaVA-1.5 uses the penultimate layer) and drops the CLS token.
    Frozen: it never trains, runs without autograd and stays in eval mode under ``model.train()``.

    Args:
        pretrained_model_name_or_path: a ``CLIPVisionModel`` (or full CLIP) checkpoint.
        select_layer: index into ``hidden_states`` (0 = patch embeddings).
        drop_cls: drop the leading CLS token.
        torch_dtype: dtype to load the weights in (default: as stored, usually float32).
    """

    def __init__(self, pretrained_model_name_or_path: str, select_layer: int = -2, drop_cls: bool = True,
                 torch_dtype=None):
        super().__init__()
        self.model = CLIPVisionModel.from_pretrained(pretrained_model_name_or_path, torch_dtype=torch_dtype)
        self.model.requires_grad_(False)
        self.model.eval()
        self.select_layer = select_layer
        self.drop_cls = drop_cls

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: never switch to training behaviour

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        outputs = self.model(pixel_values.to(self.dtype), output_hidden_states=True)
        tokens = outputs.hidden_states[self.select_layer]
        return tokens[:, 1:] if self.drop_cls else tokens
