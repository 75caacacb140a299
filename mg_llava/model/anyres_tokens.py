"""The tokens of a tiled (any-resolution) image: LLaVA-NeXT's crop grid, unpadded, with a learned row-end token.

Shape shorthand: I tiled images, n_i = rows_i x cols_i crops of image i, h x w = token grid of one crop (24 x 24 real,
4 x 4 tiny; fewer after AVG-LLaVA's pooling), H the LLM width.

    crop tokens of image i (n_i, h*w, H), row-major crops
      -> one (rows*h, cols*w) grid of the whole canvas
      -> unpadded: the token rows (or columns) that only cover the canvas padding are dropped
         (:func:`~mg_llava.dataset.anyres_views.unpad_token_grid`, in canvas geometry, so pooled grids whose cells
         are not square unpad like the full grid)
      -> ``image_newline`` appended after each remaining row: (h' x (w' + 1), H)

A tiled ``<image>`` becomes ``[global view's grid (T, H)][crop grid (h' x (w' + 1), H)][box tokens (N_i, H)]``: the
global view is MG-LLaVA's own low-res view, fused with the high-res map by the fusion; the crops go through the
low-res encoder and the projector only (no fusion: the high-res map covers the padded square, not the crops); the
object tokens come once per image from the high-res map of the whole image. ``image_newline`` follows LLaVA-NeXT:
the width of the unpadded grid varies per image, and the row ends tell the LLM where each row stops.

Any-resolution in the model is this module and the token assembler (``token_assembler.py``): :func:`is_tiled`
checks the batch's tiling against the model, the model encodes the crops (``MGLLaVAModel.encode_crops``: the
low-res encoder and the projector; AVG-LLaVA pools them first), :class:`AnyResTokens` makes each image's crop grid,
and the assembler puts it between the image's grid and its box tokens.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mg_llava.dataset.anyres_views import unpad_token_grid
from mg_llava.registry import MODELS

TILE_FIELDS = ("rows", "cols", "width", "height")  # the columns of a batch's ``image_tiles`` (I, 4)


def is_tiled(data: dict, num_images: int, anyres: Optional["AnyResTokens"]) -> bool:
    """Whether the batch's images are tiled (``image_tiles``, ``pixel_values_tiles``); a model with ``anyres`` takes
    only tiled images, a model without it only untiled ones."""
    tiled = "image_tiles" in data
    if tiled and len(data["image_tiles"]) != num_images:
        raise ValueError(f"{num_images} images but image_tiles has {len(data['image_tiles'])} rows")
    if anyres is not None and not tiled and num_images:
        raise ValueError("this model takes tiled images (anyres): the batch needs pixel_values_tiles and "
                         "image_tiles (AnyResImageViews)")
    if tiled and anyres is None:
        raise ValueError("the batch has tiled images (image_tiles) but the model was built without anyres")
    return tiled


@MODELS.register_module()
class AnyResTokens(nn.Module):
    """Assembles each tiled image's crop tokens into its unpadded grid with row ends.

    Args:
        hidden_size: H, the LLM width.
        image_newline: learn LLaVA-NeXT's row-end token (initialised N(0, 1/H), as LLaVA-NeXT); False: no row ends.
    """

    def __init__(self, hidden_size: int, image_newline: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        self.image_newline = nn.Parameter(torch.randn(hidden_size) / math.sqrt(hidden_size)) if image_newline else None

    @staticmethod
    def split(crop_tokens: torch.Tensor, image_tiles: torch.Tensor) -> List[torch.Tensor]:
        """(sum n_i, ..., H) crops of the batch -> I tensors (n_i, ..., H); ``image_tiles`` (I, 4) as TILE_FIELDS."""
        counts = (image_tiles[:, 0] * image_tiles[:, 1]).tolist()
        if sum(counts) != len(crop_tokens):
            raise ValueError(f"image_tiles {image_tiles[:, :2].tolist()} (rows, cols) need {sum(counts)} crops, "
                             f"got {len(crop_tokens)}")
        return list(crop_tokens.split(counts))

    def grid(self, crops: torch.Tensor, tile: Sequence[int], shape: Tuple[int, int]) -> torch.Tensor:
        """One image's crops (n, h*w, H) and its (rows, cols, width, height) -> (h' x (w' + 1), H) tokens."""
        rows, cols, width, height = (int(v) for v in tile)
        h, w = shape
        if crops.shape[:2] != (rows * cols, h * w):
            raise ValueError(f"a {rows}x{cols} tiling of {h}x{w}-token crops needs ({rows * cols}, {h * w}, H) "
                             f"tokens, got {tuple(crops.shape)}")
        grid = crops.view(rows, cols, h, w, -1).permute(0, 2, 1, 3, 4).reshape(rows * h, cols * w, -1)
        grid = unpad_token_grid(grid, width, height, canvas=(cols, rows))
        if self.image_newline is not None:
            newline = self.image_newline.to(grid.dtype).expand(grid.shape[0], 1, -1)
            grid = torch.cat([grid, newline], dim=1)
        return grid.reshape(-1, grid.shape[-1])

    def num_tokens(self, tile: Sequence[int], shape: Tuple[int, int]) -> int:
        """How many tokens :meth:`grid` gives for one image (no tensors needed)."""
        rows, cols, width, height = (int(v) for v in tile)
        h, w = shape
        kept = unpad_token_grid(torch.empty(rows * h, cols * w, 0), width, height, canvas=(cols, rows)).shape[:2]
        return kept[0] * (kept[1] + (self.image_newline is not None))

    def forward(self, crop_tokens: torch.Tensor, image_tiles: torch.Tensor,
                shape: Tuple[int, int]) -> List[torch.Tensor]:
        """crop_tokens (sum n_i, h*w, H), image_tiles (I, 4) -> I tensors (h'_i x (w'_i + 1), H)."""
        return [self.grid(crops, tile, shape) for crops, tile in zip(self.split(crop_tokens, image_tiles),
                                                                      image_tiles.tolist())]
