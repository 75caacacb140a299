"""RAM++ (Recognize Anything Plus, Swin-L, 384 px): the tagger of the released MG-LLaVA boxes.

RAM++ is not on PyPI. Its ``ram`` package is imported only when this tagger is built, so nothing else needs it.
"""
from typing import List, Union

import torch
import torch.nn.functional as F

from mg_llava.registry import MODELS

from .base import Tagger

RAM_INSTALL_HINT = (
    "RAM++ needs the 'ram' package, which is not on PyPI: "
    "pip install git+https://github.com/xinyu1205/recognize-anything.git "
    "and download the checkpoint ram_plus_swin_large_14m.pth (Hugging Face: xinyu1205/recognize-anything-plus-model). "
    "Without it, use --tagger clip or --tagger coco80."
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def import_ram_models():
    """The ``ram.models`` module, or an ImportError that says how to install it."""
    try:
        import ram.models as ram_models
    except ImportError as err:
        raise ImportError(RAM_INSTALL_HINT) from err
    return ram_models


def ram_pixel_values(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> (3, size, size): RAM's transform (squash-resize, ImageNet normalisation), in torch."""
    x = F.interpolate(image[None].float() / 255.0, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)[0]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


@MODELS.register_module()
class RAMPlusTagger(Tagger):
    """Tags from RAM++ with its own per-class thresholds.

    Args:
        checkpoint: path to ``ram_plus_swin_large_14m.pth``.
        image_size: RAM++ input size (384 for the released checkpoint).
        vit: RAM++ backbone name (``'swin_l'`` for the released checkpoint).
    """

    def __init__(self, checkpoint: str, image_size: int = 384, vit: str = "swin_l",
                 device: Union[str, torch.device] = "cpu", dtype: Union[str, torch.dtype] = "float32"):
        ram_models = import_ram_models()
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.checkpoint, self.image_size, self.vit = checkpoint, image_size, vit
        self.model = ram_models.ram_plus(pretrained=checkpoint, image_size=image_size, vit=vit)
        self.model = self.model.eval().to(device=self.device, dtype=self.dtype)
        self.vocabulary = [str(t) for t in self.model.tag_list]

    def describe(self):
        return dict(type=type(self).__name__, checkpoint=self.checkpoint, image_size=self.image_size, vit=self.vit,
                    dtype=str(self.dtype))

    @torch.no_grad()
    def tag(self, images) -> List[List[str]]:
        if len(images) == 0:
            return []
        pixels = torch.stack([ram_pixel_values(img.to(self.device), self.image_size) for img in images])
        tags, _ = self.model.generate_tag(pixels.to(self.dtype))  # B strings "tag | tag | ..." (and Chinese)
        return [[t.strip() for t in line.split("|") if t.strip()] for line in tags]

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(self.device)
        return self
