"""The two image views of MG-LLaVA (SPEC 1.1) and the geometry that maps boxes onto them.

Shape shorthand: S_high = high-res side (768 real, 128 tiny), S_low = low-res side (336 real, 56 tiny).

    original image (W x H pixels)
      -> pad to a square of side max(W, H) with the processor's mean colour, image pasted at
         ``((side - W) // 2, (side - H) // 2)``                                  [padded-square pixels]
      -> resize to S_high with the processor's resample filter (PIL's bicubic for CLIP), rescale by 1/255 and
         normalise exactly as the CLIP image processor does -> ``pixel_values_aux`` (3, S_high, S_high)
                                                                                 [high-res input pixels]
      -> bilinear resize of that tensor to S_low (align_corners=False, no antialias)
         -> ``pixel_values`` (3, S_low, S_low)

This is the one implementation of the views; training, chat and evaluation all call :class:`ImageViews`.
It reads mean, std and resample filter from a transformers image processor once and never changes the processor.
The work splits in two halves, so that training can do the second on its device:

- :meth:`ImageViews.pixels`: padded square -> PIL resize -> uint8 (3, S_high, S_high) (CPU, in the data loader);
- :func:`finish_views`: uint8 -> both float views (:func:`normalize_pixels`, then :func:`low_res_view`).
  ``ImageViews.__call__`` runs it on the CPU (chat, evaluation); in training the model's data preprocessor
  (:class:`mg_llava.model.ViewsDataPreprocessor`) runs the same function on the batch, on the device.

With the dataset's ``resize_on_device`` the loader stops even earlier, at the decoded image
(:meth:`ImageViews.decoded`), and the preprocessor pads and resizes it on the device with :func:`square_view`, which
reproduces Pillow's resize bit for bit (:mod:`.pil_resample`).

The high-res view equals ``CLIPImageProcessor(size=S_high, crop_size=S_high)`` on the padded square (PIL's resize,
float64 rescale cast to float32, float32 normalisation), which is what the released checkpoints were trained on;
the tests hold it to 1e-6. Another resampler (e.g. torch's antialiased kernels) differs by 1-2 grey levels on a few
values. Decoding large JPEGs at reduced DCT scale (:func:`load_image` with ``min_side``) is faster but differs by up
to 28 grey levels, so it is off unless ``reduced_jpeg_decode=True``.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_io import open_image
from ..registry import MODELS, build
from .pil_resample import resize_square_like_pil

SUPPORTED_RESAMPLE = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR)


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
class PixelView:
    """The high-res view before normalisation, and its geometry."""

    pixels: torch.Tensor  # (3, S_high, S_high) uint8: the resized image's (S, S, 3) array, permuted (channels-last);
    # from ImageViews.decoded: (3, H, W), the decoded image not yet padded or resized
    geometry: ViewGeometry


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


def normalize_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32, as the CLIP processor: ``float32(u * (1/255) in float64)``, then
    ``(x - mean) / std`` in float32. ``mean``/``std``: float32 (3, 1, 1) on the pixels' device."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    return pixels.double().mul_(1 / 255).float().sub_(mean).div_(std)


def low_res_view(pixel_values_aux: torch.Tensor, low_res: int) -> torch.Tensor:
    """(I, 3, S_high, S_high) normalised high-res views -> (I, 3, S_low, S_low): bilinear, align_corners=False,
    no antialias (the released models' low-res input)."""
    return F.interpolate(pixel_values_aux, size=(low_res, low_res), mode="bilinear", align_corners=False,
                         antialias=False)


def square_view(image: torch.Tensor, fill: Tuple[int, int, int], high_res: int,
                resample=Image.Resampling.BICUBIC) -> torch.Tensor:
    """A decoded image, uint8 (3, H, W) on any device (a channels-last view is fine) -> its uint8 high-res view
    (3, S_high, S_high): the padded square (``fill`` colour, image at the centre offset) resized as Pillow resizes
    it; equal to :meth:`ImageViews.pixels` of the same image."""
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 (3, H, W) image, got {image.dtype} {tuple(image.shape)}")
    height, width = image.shape[1:]
    geometry = ViewGeometry.for_image(width, height, high_res)
    if width == height:
        square = image
    else:
        square = torch.tensor(fill, dtype=torch.uint8, device=image.device).view(3, 1, 1).repeat(
            1, geometry.side, geometry.side)
        square[:, geometry.pad_y:geometry.pad_y + height, geometry.pad_x:geometry.pad_x + width] = image
    if geometry.side == high_res:  # Pillow returns a copy
        return square.contiguous()
    return resize_square_like_pil(square, high_res, resample)


def finish_views(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 low_res: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 high-res views (I, 3, S_high, S_high), in any memory layout -> (``pixel_values`` (I, 3, S_low, S_low),
    ``pixel_values_aux`` (I, 3, S_high, S_high)), both float32, normalised and contiguous."""
    aux = normalize_pixels(pixels, mean, std)
    return low_res_view(aux, low_res).contiguous(), aux.contiguous()


@MODELS.register_module()
class ImageViews:
    """Builds both views of an image.

    Args:
        image_processor: a transformers image processor (or a config dict building one). Only its ``image_mean``,
            ``image_std`` and ``resample`` are read; the object is not kept and never modified.
        high_res: S_high, the side of the high-res view (768 for the released models).
        low_res: S_low; defaults to the processor's crop size (336 for CLIP ViT-L/14-336).
        reduced_jpeg_decode: decode JPEGs of 4 * S_high px or more at reduced DCT scale in :meth:`load` (faster,
            but not what the processor sees: up to 28 grey levels apart). Off by default.
    """

    def __init__(self, image_processor, high_res: int, low_res: Optional[int] = None,
                 reduced_jpeg_decode: bool = False):
        processor = build(image_processor)
        if low_res is None:
            low_res = _processor_square_size(processor)
        if not 0 < low_res <= high_res:
            raise ValueError(f"need 0 < low_res <= high_res, got low_res={low_res}, high_res={high_res}")
        self.high_res = int(high_res)
        self.low_res = int(low_res)
        self.reduced_jpeg_decode = bool(reduced_jpeg_decode)
        mean = np.asarray(processor.image_mean, dtype=np.float64)
        std = np.asarray(processor.image_std, dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,):
            raise ValueError(f"expected 3-channel image_mean/image_std, got {mean.tolist()} / {std.tolist()}")
        self.mean = tuple(mean.tolist())
        self.std = tuple(std.tolist())
        # LLaVA's expand2square colour: the mean in 0-255, truncated to int.
        self.fill = tuple(int(m * 255) for m in self.mean)
        resample = Image.Resampling(getattr(processor, "resample", Image.Resampling.BICUBIC))
        if resample not in SUPPORTED_RESAMPLE:
            raise ValueError(f"resample filter {resample.name} is not supported; use BICUBIC or BILINEAR")
        self.resample = resample
        self._mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    @property
    def reduced_decode_side(self) -> Optional[int]:
        """``min_side`` for :func:`load_image`: S_high with ``reduced_jpeg_decode``, else None (full decode)."""
        return self.high_res if self.reduced_jpeg_decode else None

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float32 (:func:`normalize_pixels` with this processor's mean and std)."""
        return normalize_pixels(pixels, self._mean.to(pixels.device), self._std.to(pixels.device))

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

    def pixels(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> PixelView:
        """The high-res view of ``image`` as uint8, before normalisation (the data loader's half of the work).

        ``original_size`` (W, H) is the size the boxes refer to when ``image`` was decoded at reduced scale
        (see :func:`load_image`); by default it is ``image.size``.
        """
        width, height = original_size if original_size is not None else image.size
        square = self.pad_to_square(image if image.mode == "RGB" else image.convert("RGB"))
        resized = square.resize((self.high_res, self.high_res), resample=self.resample)
        # (S, S, 3) -> (3, S, S) as a view: the loader batches it channels-last, the device makes it contiguous
        return PixelView(torch.from_numpy(np.array(resized)).permute(2, 0, 1), self.geometry(width, height))

    def decoded(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> PixelView:
        """``image`` as uint8 (3, H, W) (a channels-last view of its array), not yet padded or resized: what the
        loader hands over with ``resize_on_device``; :func:`square_view` makes :meth:`pixels` of it on the device."""
        width, height = original_size if original_size is not None else image.size
        array = np.array(image if image.mode == "RGB" else image.convert("RGB"))
        return PixelView(torch.from_numpy(array).permute(2, 0, 1), self.geometry(width, height))

    def finish(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 (I, 3, S_high, S_high) -> (``pixel_values``, ``pixel_values_aux``), see :func:`finish_views`."""
        return finish_views(pixels, self._mean.to(pixels.device), self._std.to(pixels.device), self.low_res)

    def __call__(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> Views:
        """Both views of ``image`` (``original_size`` as in :meth:`pixels`)."""
        view = self.pixels(image, original_size)
        low, aux = self.finish(view.pixels[None])
        return Views(low[0], aux[0], view.geometry)

    def load_pixels(self, path: str, where: str = "") -> PixelView:
        """Decode ``path`` (at full size unless ``reduced_jpeg_decode``, see :func:`load_image`); its uint8 view."""
        image, size = load_image(path, min_side=self.reduced_decode_side, where=where)
        return self.pixels(image, original_size=size)

    def load(self, path: str, where: str = "") -> Views:
        """Decode ``path`` as :meth:`load_pixels` does and build both float views."""
        image, size = load_image(path, min_side=self.reduced_decode_side, where=where)
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
