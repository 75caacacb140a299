"""Pillow's resize of 8-bit images, bit for bit, in torch: the high-res view's resize can run on the training device.

Shape shorthand: I = images, C = channels, H x W = input size, h x w = output size, K = taps per output pixel.

``Image.resize(size, BICUBIC | BILINEAR)`` on an 8-bit image (Pillow's ``ImagingResample``, unchanged since
Pillow 4) is separable and fixed-point:

1. per axis, each output pixel ``o`` has a window of input pixels starting at ``first[o]``, with weights
   ``filter((i - center + 0.5) / filterscale)`` (``center = (o + 0.5) * scale``, ``scale = in / out``,
   ``filterscale = max(scale, 1)``), normalised to sum 1 in float64, then rounded half away from zero to integers
   of 22 fractional bits;
2. the horizontal pass runs first, on every row: ``(2**21 + sum(pixel * weight)) >> 22``, clipped to 0..255 and
   stored as uint8; the vertical pass does the same on its result.

Here the weights are computed with the same float64 operations in the same order (numpy, so the rounding to integers
sees the identical doubles), and each pass adds its K taps in int32 as Pillow does: for a square image resized to a
square, up or down, the result equals Pillow's (the tests compare against Pillow on photographs and random sizes).
That is the only resize the views make (the padded square to S_high), and the only one accepted: for other shapes
Pillow (13 when this was written; 11.3 pinned now) does not always run the horizontal pass first (a narrower, shorter
output was seen to match the vertical pass first, by a rule not reproduced here).

On a GPU this is a few small kernels per image; on a CPU it is slower than Pillow's C loop, so CPU training keeps
Pillow in the data loader (see :class:`~mg_llava.dataset.ImageViews`).
"""
from functools import lru_cache
from typing import Tuple

import numpy as np
import torch
from PIL import Image

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point fraction for 8-bit images


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


FILTERS = {Image.Resampling.BICUBIC: (_bicubic, 2.0), Image.Resampling.BILINEAR: (_bilinear, 1.0)}


@lru_cache(maxsize=512)  # a training run sees few distinct image sides
def resample_weights(in_size: int, out_size: int, resample=Image.Resampling.BICUBIC) -> Tuple[np.ndarray, np.ndarray]:
    """Pillow's fixed-point weights for one axis: ``(first, weights)``, ``first`` int64 (out_size,) the first input
    index of each window, ``weights`` int64 (out_size, K); taps past a window's end weigh 0 and their index is
    clamped by :func:`resize_square_like_pil`. Cached: treat the arrays as read-only."""
    if resample not in FILTERS:
        raise ValueError(f"resample filter {Image.Resampling(resample).name} is not supported; use BICUBIC or "
                         f"BILINEAR")
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got {in_size} -> {out_size}")
    kernel, support = FILTERS[resample]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    taps = int(np.ceil(support)) * 2 + 1
    center = 0.0 + (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64)
    count = last - first
    ss = 1.0 / filterscale
    weights = np.zeros((out_size, taps))
    total = np.zeros(out_size)
    for tap in range(taps):  # summed tap by tap, in Pillow's order
        inside = tap < count
        w = np.where(inside, kernel(((tap + first).astype(np.float64) - center + 0.5) * ss), 0.0)
        weights[:, tap] = w
        total += w
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    one = float(1 << PRECISION_BITS)
    fixed = np.where(weights < 0, np.trunc(-0.5 + weights * one), np.trunc(0.5 + weights * one))
    return first, fixed.astype(np.int64)


def _pass(pixels: torch.Tensor, in_size: int, out_size: int, resample, dim: int) -> torch.Tensor:
    """One axis of the resize: uint8 ``pixels`` resized along ``dim`` (-1: width, -2: height)."""
    if in_size == out_size:
        return pixels
    first, weights = resample_weights(in_size, out_size, resample)
    device = pixels.device
    index = torch.from_numpy(np.minimum(first[:, None] + np.arange(weights.shape[1]), in_size - 1)).to(device)
    weights = torch.from_numpy(weights.astype(np.int32)).to(device)
    acc = torch.full((), 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=device)
    for tap in range(weights.shape[1]):
        taken = pixels.index_select(dim, index[:, tap]).to(torch.int32)
        w = weights[:, tap] if dim == -1 else weights[:, tap, None]
        acc = acc + taken * w
    return (acc >> PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


def resize_square_like_pil(pixels: torch.Tensor, side: int, resample=Image.Resampling.BICUBIC) -> torch.Tensor:
    """uint8 (..., C, S, S) -> uint8 (..., C, side, side), equal to Pillow's ``image.resize((side, side),
    resample)`` of each image (any device; the input may be a channels-last view)."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    height, width = pixels.shape[-2:]
    if height != width:
        raise ValueError(f"expected square images, got {height}x{width} (H x W)")
    return _pass(_pass(pixels, width, side, resample, -1), height, side, resample, -2)
