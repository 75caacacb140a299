"""The two image views of MG-LLaVA (SPEC 1.1) and the geometry that maps boxes onto them.

Shape shorthand: S_high = high-res side (768 real, 128 tiny), S_low = low-res side (336 real, 56 tiny).

    original image (W x H pixels)
      -> pad to a square of side max(W, H) with the processor's mean colour, image pasted at
         ``((side - W) // 2, (side - H) // 2)``                                  [padded-square pixels]
      -> resize to S_high with the processor's resample filter (PIL's bicubic for CLIP), scale to [0, 1],
         normalise -> ``pixel_values_aux`` (3, S_high, S_high)                   [high-res input pixels]
      -> bilinear resize of that tensor to S_low (align_corners=False, no antialias)
         -> ``pixel_values`` (3, S_low, S_low)

This is the one implementation of the views; training, chat and evaluation all call :class:`ImageViews`.
It reads mean, std and resample filter from a transformers image processor once and never changes the processor.

The resize runs torch's antialiased uint8 kernels, which implement PIL's bicubic/bilinear filters (a = -0.5, support
scaled when shrinking) and agree with PIL, hence with the processor, to one grey level on a few pixels; they are
about 4x faster than PIL here, and the high-res resize is the largest cost of a training sample.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_io import open_image
from ..registry import MODELS, build


# PIL filter -> torch mode; with antialias=True torch's kernels are PIL's for these two
_TORCH_MODES = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}


@dataclass(frozen=True)
class ViewGeometry:
    """Where an original image sits inside the high-res view.

    All lengths are in original-image pixels except ``scale``, which converts padded-square pixels to high-res
    input pixels: ``x_high = (x_orig + pad_x) * scale``.
    """

    width: int  # W of the original image
    height: int  # H of the original image
    pad_x: int  # paste offset of the image inside the padded square
    pad_y: int
    side: int  # side of the padded square, max(W, H)
    scale: float  # S_high / side

    @classmethod
    def for_image(cls, width: int, height: int, high_res: int) -> "ViewGeometry":
        side = max(width, height)
        return cls(width, height, (side - width) // 2, (side - height) // 2, side, high_res / side)

    def image_rect(self) -> Tuple[float, float, float, float]:
        """The original image's rectangle inside the high-res input, xyxy in high-res input pixels."""
        return (
            self.pad_x * self.scale,
            self.pad_y * self.scale,
            (self.pad_x + self.width) * self.scale,
            (self.pad_y + self.height) * self.scale,
        )


@dataclass(frozen=True)
class Views:
    """The two views of one image and its geometry."""

    pixel_values: torch.Tensor  # (3, S_low, S_low) float32, normalised
    pixel_values_aux: torch.Tensor  # (3, S_high, S_high) float32, normalised
    geometry: ViewGeometry


def load_image(path: str, min_side: Optional[int] = None, where: str = "") -> Tuple[Image.Image, Tuple[int, int]]:
    """Decode ``path`` as upright RGB through the shared decoder (:func:`mg_llava.image_io.open_image`); returns
    ``(image, (W, H))`` with the ORIGINAL (upright) size.

    With ``min_side``, a JPEG larger than needed is decoded at a reduced DCT scale (1/2, 1/4 or 1/8) while its long
    side stays >= 2 * ``min_side``, so the resize to ``min_side`` still downsamples by at least 2. Box geometry always
    uses the original size; the view differs from a full-resolution decode by the scaler's rounding of the image
    border, at most half a pixel of the ``min_side`` view. Raises :class:`~mg_llava.image_io.ImageDecodeError`
    (naming ``where`` and the file) for every way the file can fail.
    """
    decoded = open_image(path, where=where, min_side=min_side)
    return decoded.image, decoded.size


@MODELS.register_module()
class ImageViews:
    """Builds both views of an image.

    Args:
        image_processor: a transformers image processor (or a config dict building one). Only its ``image_mean``,
            ``image_std`` and ``resample`` are read; the object is not kept and never modified.
        high_res: S_high, the side of the high-res view (768 for the released models).
        low_res: S_low; defaults to the processor's crop size (336 for CLIP ViT-L/14-336).
    """

    def __init__(self, image_processor, high_res: int, low_res: Optional[int] = None):
        processor = build(image_processor)
        if low_res is None:
            low_res = _processor_square_size(processor)
        if not 0 < low_res <= high_res:
            raise ValueError(f"need 0 < low_res <= high_res, got low_res={low_res}, high_res={high_res}")
        self.high_res = int(high_res)
        self.low_res = int(low_res)
        mean = np.asarray(processor.image_mean, dtype=np.float64)
        std = np.asarray(processor.image_std, dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,):
            raise ValueError(f"expected 3-channel image_mean/image_std, got {mean.tolist()} / {std.tolist()}")
        self.mean = tuple(mean.tolist())
        self.std = tuple(std.tolist())
        # LLaVA's expand2square colour: the mean in 0-255, truncated to int.
        self.fill = tuple(int(m * 255) for m in self.mean)
        resample = Image.Resampling(getattr(processor, "resample", Image.Resampling.BICUBIC))
        if resample not in _TORCH_MODES:
            raise ValueError(f"resample filter {resample.name} is not supported; use BICUBIC or BILINEAR")
        self.resample = resample
        # normalised = uint8 * a + b, folded into one affine map per channel.
        self._a = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(3, 1, 1)
        self._b = torch.tensor(-mean / std, dtype=torch.float32).view(3, 1, 1)

    def __repr__(self):
        return f"{type(self).__name__}(high_res={self.high_res}, low_res={self.low_res}, mean={self.mean})"

    def geometry(self, width: int, height: int) -> ViewGeometry:
        return ViewGeometry.for_image(width, height, self.high_res)

    def pad_to_square(self, image: Image.Image) -> Image.Image:
        """The padded square (side max(W, H)), image pasted at the centre offset, mean-colour background."""
        width, height = image.size
        geometry = ViewGeometry.for_image(width, height, self.high_res)
        if width == height:
            return image
        square = Image.new("RGB", (geometry.side, geometry.side), self.fill)
        square.paste(image, (geometry.pad_x, geometry.pad_y))
        return square

    def __call__(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> Views:
        """Both views of ``image``.

        ``original_size`` (W, H) is the size the boxes refer to when ``image`` was decoded at reduced scale
        (see :func:`load_image`); by default it is ``image.size``.
        """
        width, height = original_size if original_size is not None else image.size
        square = self.pad_to_square(image.convert("RGB"))
        # (1, 3, side, side) uint8 viewed channels-last (no copy); torch's resize kernels are fastest in that layout
        pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1)[None]
        resized = F.interpolate(
            pixels, size=(self.high_res, self.high_res), mode=_TORCH_MODES[self.resample], antialias=True,
            align_corners=False,
        )
        aux = resized.float().mul_(self._a).add_(self._b)  # (1, 3, S_high, S_high) normalised
        low = F.interpolate(aux, size=(self.low_res, self.low_res), mode="bilinear", align_corners=False,
                            antialias=False)
        return Views(low[0].contiguous(), aux[0].contiguous(), self.geometry(width, height))

    def load(self, path: str, where: str = "") -> Views:
        """Decode ``path`` (large JPEGs at reduced scale, see :func:`load_image`) and build both views."""
        image, size = load_image(path, min_side=self.high_res, where=where)
        return self(image, original_size=size)


def _processor_square_size(processor) -> int:
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    if "height" in size and "width" in size:
        if size["height"] != size["width"]:
            raise ValueError(f"the processor's input is not square ({size}); pass low_res explicitly")
        return int(size["height"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"])
    raise ValueError(f"cannot read a square input size from {type(processor).__name__} ({size}); pass low_res")
