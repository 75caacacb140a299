"""High-resolution branch: the trunk of an open_clip ConvNeXt, returning every stage map."""
from typing import List, Optional

import torch
import torch.nn as nn

from mg_llava.registry import MODELS


@MODELS.register_module()
class OpenCLIPConvNeXtEncoder(nn.Module):
    """``pixel_values`` (I, 3, S, S) -> the 4 stage maps [(I, C_k, S / 2^(k+2), S / 2^(k+2)) for k = 0..3].

    For ``convnext_large_d_320`` at S = 768: 192@192x192, 384@96x96, 768@48x48, 1536@24x24. Only the trunk
    (stem + stages) is kept; the CLIP text tower, head and pooling are discarded after loading.

    Frozen, no autograd, and kept in eval mode under ``model.train()``: the trunk has stochastic depth (0.1 for
    the released encoder), which must not run while the rest of the model trains.

    Args:
        model_name: an open_clip model name (``'convnext_large_d_320'``) or ``'local-dir:/path/to/snapshot'``.
        pretrained: weights for a plain model name: an open_clip tag or a local ``open_clip_pytorch_model.bin``.
            Ignored by open_clip for ``local-dir:`` names, which carry their own weights.
        precision: open_clip precision string (``'fp32'``, ``'bf16'``, ...).
    """

    def __init__(self, model_name: str = "convnext_large_d_320", pretrained: Optional[str] = None,
                 precision: str = "fp32"):
        super().__init__()
        import open_clip

        clip = open_clip.create_model(model_name, pretrained=pretrained, precision=precision)
        trunk = getattr(clip.visual, "trunk", None)
        if trunk is None or not hasattr(trunk, "stages") or not hasattr(trunk, "stem"):
            raise TypeError(f"open_clip model {model_name!r} has no timm ConvNeXt trunk (stem + stages)")
        self.stem = trunk.stem
        self.stages = trunk.stages
        self.out_channels: List[int] = [info["num_chs"] for info in trunk.feature_info]
        self.requires_grad_(False)
        self.eval()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: stochastic depth and any other train-time behaviour stay off

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(pixel_values.to(self.dtype))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps
