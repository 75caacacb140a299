"""Images for box generation, decoded by the shared decoder (:mod:`mg_llava.image_io`).

Boxes are in the pixel grid of the upright picture (EXIF orientation applied), the grid the training dataset and
chat decode to through the same function. Every failure raises :class:`ImageDecodeError` with a ``reason`` from
:data:`SKIP_REASONS`; the pipeline records it per sample and counts it in the summary.
"""
import base64
import binascii
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..image_io import DEFAULT_MAX_PIXELS, SKIP_REASONS, ImageDecodeError, open_image

__all__ = ["DEFAULT_MAX_PIXELS", "SKIP_REASONS", "ImageDecodeError", "decode_base64", "open_rgb", "to_uint8_tensor"]


def decode_base64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ImageDecodeError(f"{where}: invalid base64 image data ({err})") from err


def open_rgb(source, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, where: str = "") -> Tuple[Image.Image, str]:
    """``(upright RGB image, original PIL mode)`` of ``source`` (a path or encoded bytes), full resolution."""
    decoded = open_image(source, where=where, max_pixels=max_pixels)
    return decoded.image, decoded.mode


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W), the form images travel in between loader, tagger and detector."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
