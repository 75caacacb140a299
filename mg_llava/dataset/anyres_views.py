"""Any-resolution tiling (LLaVA-NeXT) as a mode of :class:`ImageViews`.

Shape shorthand: S_low = crop side (336 real, 56 tiny), S_high = high-res side, n = rows x cols crops, s = S_low /
patch = tokens per crop side (24 real).

    original image (W x H)
      -> best-fit resolution among the grid pinpoints (width, height), LLaVA-NeXT's rule: the largest effective
         resolution min(W' x H', W x H) of the image scaled to fit, ties broken by the least wasted area
      -> resize to fit inside it (aspect kept), paste centred on a canvas of that size filled with the mean colour
                                                                                        [canvas pixels]
      -> cut into n crops of S_low x S_low, row-major         -> ``crops`` (n, 3, S_low, S_low)
    the global view is MG-LLaVA's own low-res view (padded square at S_low)           -> ``pixel_values``
    the high-res view is unchanged (padded square at S_high)                         -> ``pixel_values_aux``

How the other branches see a tiled image: the high-res branch (ConvNeXt, Conv-Gate fusion) and the object branch
keep working on the padded square at S_high exactly as without tiling, so the boxes stay in high-res input pixels
(``Views.geometry``) and each object still gives one token; the fusion applies to the global view's grid, whose
positions match the high-res map. The crops add detail through the low-res encoder only. Two deliberate differences
from LLaVA-NeXT: the global view is padded to a square (LLaVA-NeXT squashes it), so the global grid and the boxes share
one geometry; and the canvas is filled with the mean colour (LLaVA-NeXT: black), which normalises to about 0.

The dataset hands the crops over as ``pixel_values_tiles`` and each image's (rows, cols, W, H) as ``image_tiles``
(docs/interfaces.md); the model (:mod:`mg_llava.model.anyres_tokens`) reassembles the crops' tokens into one
(rows x s) x (cols x s) grid and drops, with :func:`unpad_token_grid`, the rows or columns that only cover the canvas
padding (LLaVA-NeXT's unpadding).
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..registry import MODELS
from .image_views import ImageViews, PixelView, Views

LLAVA_NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))  # (width, height)


def select_best_resolution(width: int, height: int, pinpoints: Sequence[Sequence[int]]) -> Tuple[int, int]:
    """The (width, height) pinpoint that keeps most of a W x H image when it is scaled to fit inside it."""
    best, best_effective, best_wasted = None, -1, math.inf
    for target_w, target_h in pinpoints:
        scale = min(target_w / width, target_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = target_w * target_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (int(target_w), int(target_h)), effective, wasted
    return best


@dataclass(frozen=True)
class TileGeometry:
    """Where an original W x H image sits on the tiling canvas: ``x_canvas = x_orig * scale_x + pad_x``."""

    width: int
    height: int
    canvas_width: int  # the chosen pinpoint
    canvas_height: int
    resized_width: int  # the image's size on the canvas
    resized_height: int
    pad_x: int  # paste offset on the canvas
    pad_y: int
    crop: int  # S_low

    @classmethod
    def fit(cls, width: int, height: int, canvas: Tuple[int, int], crop: int) -> "TileGeometry":
        canvas_w, canvas_h = canvas
        # LLaVA-NeXT's rule in exact integer arithmetic: its float ceil(H * (canvas_w / W)) turns e.g.
        # 600 * (112 / 800) = 84.00000000000001 into 85
        if canvas_w * height < canvas_h * width:  # canvas_w / W < canvas_h / H: the width fills the canvas
            new_w, new_h = canvas_w, min(-(-height * canvas_w // width), canvas_h)
        else:
            new_w, new_h = min(-(-width * canvas_h // height), canvas_w), canvas_h
        return cls(width, height, canvas_w, canvas_h, new_w, new_h, (canvas_w - new_w) // 2, (canvas_h - new_h) // 2,
                   crop)

    @property
    def rows(self) -> int:
        return self.canvas_height // self.crop

    @property
    def cols(self) -> int:
        return self.canvas_width // self.crop

    def to_canvas(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in original-image pixels -> canvas pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.resized_width / self.width, self.resized_height / self.height] * 2)
        return boxes * scale + np.array([self.pad_x, self.pad_y] * 2)

    def to_crop(self, boxes: np.ndarray, row: int, col: int) -> np.ndarray:
        """(N, 4) original-image pixels -> pixels of crop (row, col), clipped to it; boxes outside it come back
        with zero width or height."""
        canvas = self.to_canvas(boxes) - np.array([col * self.crop, row * self.crop] * 2)
        return canvas.clip(0, self.crop)


@dataclass(frozen=True)
class AnyResPixelView(PixelView):
    """:class:`PixelView` (the uint8 high-res view) plus the uint8 crops, row-major, and their geometry."""

    crops: Optional[torch.Tensor] = None  # (n, 3, S_low, S_low) uint8
    tiles: Optional[TileGeometry] = None

    @property
    def tile_row(self) -> Tuple[int, int, int, int]:
        """(rows, cols, W, H): this image's row of a batch's ``image_tiles``."""
        return self.tiles.rows, self.tiles.cols, self.tiles.width, self.tiles.height


@dataclass(frozen=True)
class AnyResViews(Views):
    """:class:`Views` (``pixel_values`` is the global view) plus the crops, row-major, and their geometry."""

    crops: Optional[torch.Tensor] = None  # (n, 3, S_low, S_low) float32, normalised
    tiles: Optional[TileGeometry] = None

    @property
    def tile_row(self) -> Tuple[int, int, int, int]:
        """(rows, cols, W, H): this image's row of a batch's ``image_tiles``."""
        return self.tiles.rows, self.tiles.cols, self.tiles.width, self.tiles.height


@MODELS.register_module()
class AnyResImageViews(ImageViews):
    """:class:`ImageViews` plus LLaVA-NeXT's any-resolution crops of the low-res branch.

    Args:
        image_processor, high_res, low_res: as for :class:`ImageViews` (S_low is the crop side).
        grid_pinpoints: candidate canvases (width, height), multiples of S_low; LLaVA-NeXT's five by default
            (scaled by S_low / 336 when S_low is not 336, so the tiny models tile the same way).
    """

    def __init__(self, image_processor, high_res: int, low_res: Optional[int] = None,
                 grid_pinpoints: Optional[Sequence[Sequence[int]]] = None):
        super().__init__(image_processor, high_res, low_res)
        if grid_pinpoints is None:
            grid_pinpoints = [(w * self.low_res // 336, h * self.low_res // 336) for w, h in LLAVA_NEXT_PINPOINTS]
        self.grid_pinpoints = tuple((int(w), int(h)) for w, h in grid_pinpoints)
        bad = [p for p in self.grid_pinpoints if p[0] % self.low_res or p[1] % self.low_res or min(p) <= 0]
        if bad:
            raise ValueError(f"grid pinpoints must be positive multiples of the crop side {self.low_res}: {bad}")

    def tile_geometry(self, width: int, height: int) -> TileGeometry:
        canvas = select_best_resolution(width, height, self.grid_pinpoints)
        return TileGeometry.fit(width, height, canvas, self.low_res)

    def pixels(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> "AnyResPixelView":
        """The uint8 high-res view (:meth:`ImageViews.pixels`) and the uint8 crops (the data loader's half)."""
        view = super().pixels(image, original_size)
        tiles = self.tile_geometry(view.geometry.width, view.geometry.height)
        # the crops come from the image resized to fit the canvas, pasted at the centre offset (PIL's resampling,
        # as the square views)
        resized = image.convert("RGB").resize((tiles.resized_width, tiles.resized_height), resample=self.resample)
        canvas = Image.new("RGB", (tiles.canvas_width, tiles.canvas_height), self.fill)
        canvas.paste(resized, (tiles.pad_x, tiles.pad_y))
        side = self.low_res
        pixels = torch.from_numpy(np.array(canvas)).permute(2, 0, 1)  # (3, canvas_h, canvas_w) uint8
        crops = pixels.unfold(1, side, side).unfold(2, side, side)  # (3, rows, cols, S_low, S_low)
        crops = crops.permute(1, 2, 0, 3, 4).reshape(-1, 3, side, side).contiguous()
        return AnyResPixelView(view.pixels, view.geometry, crops, tiles)

    def __call__(self, image: Image.Image, original_size: Optional[Tuple[int, int]] = None) -> AnyResViews:
        """Both float views and the crops normalised as the CLIP processor does (chat and evaluation)."""
        view = self.pixels(image, original_size)
        low, aux = self.finish(view.pixels[None])
        return AnyResViews(low[0], aux[0], view.geometry, self.normalize(view.crops), view.tiles)


def unpad_token_grid(grid: torch.Tensor, width: int, height: int,
                     canvas: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """(h, w, ...) token grid of the whole canvas -> the rows or columns that cover the W x H image (LLaVA-NeXT's
    rule: scale the image to the canvas, drop the centred padding), in exact integer arithmetic.

    ``canvas`` (width, height), in any unit, is the canvas's shape when the grid's cells are not square (a grid
    pooled 1x2 has half as many columns as the canvas's aspect says); by default the grid's own (w, h).
    """
    grid_h, grid_w = grid.shape[:2]
    canvas_w, canvas_h = canvas if canvas is not None else (grid_w, grid_h)
    if width * canvas_h > canvas_w * height:  # wider than the canvas: padding above and below
        new_h = height * canvas_w * grid_h // (width * canvas_h)
        pad = (grid_h - new_h) // 2
        return grid[pad:grid_h - pad]
    new_w = width * canvas_h * grid_w // (height * canvas_w)
    pad = (grid_w - new_w) // 2
    return grid[:, pad:grid_w - pad]


__all__ = ["AnyResImageViews", "AnyResPixelView", "AnyResViews", "LLAVA_NEXT_PINPOINTS", "TileGeometry",
           "select_best_resolution", "unpad_token_grid"]
