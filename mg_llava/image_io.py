"""The one image decoder: training, box generation, chat and evaluation all read images through :func:`open_image`.

Failures: every way a file can fail to decode (missing, not an image, truncated, a broken PNG chunk that PIL reports
as ``SyntaxError``, ``struct.error``, ``zlib.error``, a decompression bomb, a corrupt EXIF block) raises
:class:`ImageDecodeError`, which names the file and the sample and says why (``reason``, one of
:data:`SKIP_REASONS`); the library's exception is chained as ``__cause__``.

Pixels (the choices, so that an image never becomes a different picture without a word):

- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``) is scaled by its bit depth, ``v * 255 / 65535``; 32-bit integer ``I``
  (how PIL hands over some 16-bit PNG/TIFF files) the same when its values fit 16 bits, else by its real range.
  PIL's own ``convert`` clips these to 0/255, i.e. mostly white.
- 32-bit float ``F``: values within [0, 1] are scaled by 255, otherwise by their real (finite) range; NaN is black.
- ``1``, ``L``, ``CMYK``, ``YCbCr``: PIL's conversion (``CMYK``: R = 255 - C - K, clipped).
- Transparency (``LA``, ``RGBA``, ``PA``, palette with a transparent index): composited on white, as an image viewer
  shows it on a page; dropping the alpha channel instead shows whatever colour the transparent pixels happen to hold.
- PNG chunk checksums are verified before decoding (PIL skips them for pixel data), so a flipped bit is an error,
  not a different picture. JPEG has no checksum: damage inside its entropy-coded data cannot be detected.
- EXIF orientation is applied (the picture as a camera app and a person see it). Box generation decodes through
  this function too, so boxes and pixels share one grid. ``size`` is the ORIENTED original size.
"""
import io
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image

# PIL's default decompression-bomb limit, 1024 ** 3 // 4 // 3 (it warns above this and refuses above twice this).
DEFAULT_MAX_PIXELS = 89_478_485
SKIP_REASONS = ("missing", "unreadable", "too_large")
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (1 = already upright)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")

ImageSource = Union[str, bytes]


class ImageDecodeError(ValueError):
    """An image that cannot be used. ``reason`` is one of :data:`SKIP_REASONS`; ``path`` the file (or None)."""

    def __init__(self, message: str, reason: str = "unreadable", path: Optional[str] = None):
        assert reason in SKIP_REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.path = path

    def __reduce__(self):  # keeps reason and path across DataLoader worker processes
        return type(self), (str(self), self.reason, self.path)


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright; at reduced JPEG scale when ``min_side`` was given
    size: Tuple[int, int]  # (W, H) of the full-resolution upright picture, the grid boxes refer to
    mode: str  # the file's PIL mode before conversion


def open_image(source: ImageSource, where: str = "", min_side: Optional[int] = None,
               max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``source`` (a path or encoded bytes) as an upright RGB image.

    ``where`` names the sample in messages (e.g. ``"sample 'a7'"``). The size is checked from the header before any
    pixel is decoded, so a decompression bomb costs nothing. With ``min_side``, a JPEG much larger than needed is
    decoded at a reduced DCT scale (PIL ``draft``) while its long side stays >= 2 * ``min_side``.
    """
    path = source if isinstance(source, str) else None
    what = path if path is not None else f"<{len(source)} bytes>"
    prefix = f"{where}: {what}" if where else what

    def fail(reason, problem, err=None):
        cause = f" ({type(err).__name__}: {err})" if err is not None else ""
        return ImageDecodeError(f"{prefix}: {problem}{cause}", reason, path)

    def reopen():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            return Image.open(path if path is not None else io.BytesIO(source))

    try:
        image = reopen()
        if image.format == "PNG":  # PIL does not check the pixel chunks' CRCs when decoding; verify() does
            image.verify()
            image = reopen()
    except FileNotFoundError as err:
        raise fail("missing", "image file not found") from err
    except Image.DecompressionBombError as err:
        raise fail("too_large", "decompression bomb", err) from err
    except Exception as err:  # noqa: BLE001 - PIL raises many types for bad headers; all mean "not an image"
        raise fail("unreadable", "cannot identify image", err) from err
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise fail("too_large", f"{width}x{height} = {width * height} pixels > limit {max_pixels}")
        if width == 0 or height == 0:
            raise fail("unreadable", f"empty image ({width}x{height})")
        mode = image.mode
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if min_side is not None and image.format == "JPEG" and max(width, height) >= 4 * min_side:
                reduce = 2 * min_side / max(width, height)
                image.draft("RGB", (math.ceil(width * reduce), math.ceil(height * reduce)))
            image.load()
            rgb = to_rgb(image)
        except Exception as err:  # noqa: BLE001 - truncated/corrupt data: OSError, SyntaxError, struct/zlib errors...
            raise fail("unreadable", "cannot decode image", err) from err
    transpose = _ORIENT.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
        if orientation >= 5:
            width, height = height, width
    return DecodedImage(rgb, (width, height), mode)


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any PIL mode, by the rules in the module docstring."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_grey_to_uint8(np.asarray(image), mode), "L").convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) 16/32-bit integer or float grey -> uint8 by bit depth or real range."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        scaled = values * 255
    elif mode != "F" and lo >= 0 and hi <= 65535:
        scaled = values * (255 / 65535)
    else:
        scaled = (values - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(values)
    scaled[~finite] = 0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
