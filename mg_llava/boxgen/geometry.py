"""OWLv2's input geometry and the way back to original pixels.

Shape shorthand: H, W = original image height and width; side = max(H, W); S = detector input size (1008 for
OWLv2-L/14, 64 for the tiny test model); N = boxes.

Coordinate spaces:

- original pixels: the decoded image, x in [0, W], y in [0, H].
- padded square: OWLv2 pads the image with grey at the bottom and right to side x side (origin unchanged), then
  resizes the square to S x S. Its predicted boxes are (cx, cy, w, h) normalised to [0, 1] of that square.

So a normalised box maps back by ``* side``; there is no offset, because the padding is only bottom/right (unlike the
centred padding MG-LLaVA's own pre-processing uses). Boxes are then clipped to the image, since a box may reach into
the grey padding, and rounded to int; the released generation (``box_format='released'``) did neither: it truncated
the unclipped boxes toward zero.
"""
from typing import Sequence

import torch
import torch.nn.functional as F

OWLV2_PAD_VALUE = 0.5  # grey, in [0, 1] units before normalisation (transformers' Owlv2ImageProcessor.pad)


def owlv2_pixel_values(image: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 image (3, H, W) -> normalised detector input (3, S, S), on the image's device.

    Pads bottom/right to the square with grey, resizes bilinearly (anti-aliased when shrinking, which stands in for
    the Gaussian pre-filter of transformers' scipy-based resize) and normalises.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 image of shape (3, H, W), got {image.dtype} {tuple(image.shape)}")
    _, height, width = image.shape
    side = max(height, width)
    square = image.new_full((3, side, side), OWLV2_PAD_VALUE * 255.0, dtype=torch.float32)
    square[:, :height, :width] = image  # in 0..255 first: one float buffer instead of three
    square.div_(255.0)
    resized = F.interpolate(square[None], size=(size, size), mode="bilinear", align_corners=False,
                            antialias=side > size)[0]
    mean_t = torch.tensor(mean, dtype=resized.dtype, device=resized.device)[:, None, None]
    std_t = torch.tensor(std, dtype=resized.dtype, device=resized.device)[:, None, None]
    return (resized - mean_t) / std_t


def owlv2_boxes_to_original(boxes: torch.Tensor, height: int, width: int, clip: bool = True) -> torch.Tensor:
    """(N, 4) cx, cy, w, h normalised to the padded square -> (N, 4) x1, y1, x2, y2 in original pixels, clipped to
    the image unless ``clip`` is False (the released generation's boxes: they may reach into the padding and below 0).
    """
    side = float(max(height, width))
    cx, cy, w, h = boxes.float().unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1) * side
    if not clip:
        return xyxy
    limits = torch.tensor([width, height, width, height], dtype=xyxy.dtype, device=xyxy.device)
    return torch.minimum(xyxy.clamp(min=0), limits)


def released_int_boxes(boxes: torch.Tensor) -> list:
    """(N, 4) float original pixels -> N lists of 4 ints as the released generation wrote them: truncated toward
    zero (``Tensor.int()``), neither clipped nor rounded, zero-area boxes kept."""
    return boxes.trunc().to(torch.int64).tolist()


def round_boxes(boxes: torch.Tensor):
    """(N, 4) float original pixels -> (list of [x1, y1, x2, y2] ints, keep mask (N,)) dropping zero-area boxes.

    A box that lies wholly in the padding collapses to a line at the image edge after clipping; it is dropped.
    """
    rounded = torch.round(boxes).to(torch.int64)
    keep = (rounded[:, 2] > rounded[:, 0]) & (rounded[:, 3] > rounded[:, 1])
    return rounded[keep].tolist(), keep
