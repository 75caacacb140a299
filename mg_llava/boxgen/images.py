"""Decoding one image for box generation, with the bad-input policy.

Boxes are in the pixel grid of the image as PIL decodes it, without EXIF rotation, which is what LLaVA's loader
(``Image.open(path).convert('RGB')``) feeds the model. Every failure raises :class:`ImageSkip` with a reason from
:data:`SKIP_REASONS`; the pipeline records it per sample and counts it in the summary.
"""
import base64
import binascii
import io
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

# PIL's default decompression-bomb limit, 1024 ** 3 // 4 // 3 (it warns above this and refuses above twice this).
DEFAULT_MAX_PIXELS = 89_478_485

SKIP_REASONS = ("missing", "unreadable", "too_large")


class ImageSkip(Exception):
    """An image that cannot be used; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str, message: str):
        assert reason in SKIP_REASONS, reason
        super().__init__(message)
        self.reason = reason


def decode_base64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ImageSkip("unreadable", f"{where}: invalid base64 image data ({err})") from err


def open_rgb(source, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, where: str = "") -> Tuple[Image.Image, str]:
    """Open ``source`` (a path or encoded bytes) as an RGB image; returns ``(image, original_mode)``.

    The size is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
    """
    where = where or (source if isinstance(source, str) else "<bytes>")
    try:
        fp = source if isinstance(source, str) else io.BytesIO(source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            image = Image.open(fp)
    except FileNotFoundError as err:
        raise ImageSkip("missing", f"{where}: image file not found") from err
    except Image.DecompressionBombError as err:
        raise ImageSkip("too_large", f"{where}: {err}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageSkip("unreadable", f"{where}: cannot identify image ({err})") from err
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageSkip("too_large", f"{where}: {width}x{height} = {width * height} pixels > limit {max_pixels}")
    if width == 0 or height == 0:
        image.close()
        raise ImageSkip("unreadable", f"{where}: empty image ({width}x{height})")
    mode = image.mode
    try:
        image.load()
        rgb = image.convert("RGB")  # always a new image, so the file can be closed
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt pixel data
        raise ImageSkip("unreadable", f"{where}: cannot decode image ({err})") from err
    finally:
        image.close()
    return rgb, mode


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W), the form images travel in between loader, tagger and detector."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
