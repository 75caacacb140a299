"""Any-resolution tiling against an independent implementation: transformers 4.48's LLaVA-NeXT functions
(``select_best_resolution``, ``get_anyres_image_grid_shape``, ``unpad_image``) on a few hundred seeded random image
sizes, for LLaVA-NeXT's pinpoints at the real crop side (336) and at the tiny one (56).

transformers writes sizes (height, width) and pinpoints [height, width]; ours are (width, height) throughout.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next.image_processing_llava_next import _get_patch_output_size
from transformers.models.llava_next.image_processing_llava_next import select_best_resolution as hf_best_resolution
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

from mg_llava.dataset.anyres_views import AnyResImageViews, TileGeometry, select_best_resolution, unpad_token_grid
from mg_llava.model.anyres_tokens import AnyResTokens

PROCESSOR = SimpleNamespace(image_mean=[0.5, 0.4, 0.3], image_std=[0.25, 0.25, 0.25], resample=3)
NUM_SIZES = 400


def random_sizes(seed=23, count=NUM_SIZES):
    """(W, H) pairs: log-uniform sides from 1 to 5000 px (thin strips, tiny and huge images), plus the aspect ratios
    of the pinpoints themselves (ties between canvases)."""
    rng = np.random.default_rng(seed)
    sides = np.exp(rng.uniform(0, math.log(5000), size=(count, 2))).astype(int).clip(1, None)
    exact = [(k * w, k * h) for k in (1, 3, 7) for w, h in ((1, 2), (2, 1), (1, 1), (3, 1), (1, 3))]
    return [tuple(int(v) for v in s) for s in sides] + exact


def views(crop):
    return AnyResImageViews(PROCESSOR, high_res=2 * crop, low_res=crop)


@pytest.mark.parametrize("crop", [336, 56])
def test_best_fit_and_grid_shape_equal_transformers(crop):
    tiling = views(crop)
    hf_pinpoints = [[h, w] for w, h in tiling.grid_pinpoints]
    for width, height in random_sizes():
        best = select_best_resolution(width, height, tiling.grid_pinpoints)
        hf_height, hf_width = hf_best_resolution((height, width), hf_pinpoints)
        assert best == (hf_width, hf_height), (width, height)
        tiles = tiling.tile_geometry(width, height)
        assert (tiles.canvas_width, tiles.canvas_height) == best
        assert (tiles.rows, tiles.cols) == tuple(get_anyres_image_grid_shape((height, width), hf_pinpoints, crop)), (
            width, height)


@pytest.mark.parametrize("crop, side", [(336, 24), (56, 4)])
def test_unpadding_keeps_the_rows_and_columns_transformers_keeps(crop, side):
    """The full-resolution crop grid (rows x side) x (cols x side) of every size, unpadded by ours (as the model
    calls it, in canvas geometry) and by transformers' ``unpad_image``: the same cells, not only the same shape."""
    tiling = views(crop)
    checked_rows = checked_cols = 0
    for width, height in random_sizes():
        tiles = tiling.tile_geometry(width, height)
        rows, cols = tiles.rows * side, tiles.cols * side
        cells = torch.arange(rows * cols).view(rows, cols, 1)  # each cell holds its own index
        ours = unpad_token_grid(cells, width, height, canvas=(tiles.cols, tiles.rows))
        theirs = unpad_image(cells.permute(2, 0, 1), (height, width)).permute(1, 2, 0)
        assert torch.equal(ours, theirs), (width, height, tuple(ours.shape), tuple(theirs.shape))
        checked_rows += ours.shape[0] < rows
        checked_cols += ours.shape[1] < cols
    assert checked_rows > 50 and checked_cols > 50  # both directions of padding were exercised


def test_the_models_crop_grid_is_llava_next_pack_order_then_unpadded():
    """AnyResTokens.grid (crops row-major, tokens row-major inside each crop) against LLaVA-NeXT's packing in
    transformers' modeling code: (rows, cols, h, w, C) -> (C, rows h, cols w) -> unpad_image."""
    side, width_tokens = 4, 3
    tokens = AnyResTokens(width_tokens, image_newline=False)
    tiling = views(56)
    generator = torch.Generator().manual_seed(3)
    for width, height in random_sizes(count=60):
        tiles = tiling.tile_geometry(width, height)
        crops = torch.randn(tiles.rows * tiles.cols, side * side, width_tokens, generator=generator)
        ours = tokens.grid(crops, (tiles.rows, tiles.cols, width, height), (side, side))
        packed = crops.view(tiles.rows, tiles.cols, side, side, -1).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
        theirs = unpad_image(packed, (height, width)).flatten(1, 2).transpose(0, 1)
        assert torch.equal(ours, theirs), (width, height)


def test_canvas_fit_equals_llava_next_except_where_its_float_ceil_overshoots():
    """The image's size on the canvas against transformers' image processor (``_get_patch_output_size``, the pinned
    4.48.0's helper; the released LLaVA-NeXT's ``resize_and_pad_image`` computes the same): ``min(ceil(H * (canvas_w
    / W)), canvas_h)`` in floats, where ours is the exact rational ceiling. They may differ only where ``H * canvas_w
    / W`` is an integer that the float product overshoots (one pixel more for LLaVA-NeXT)."""
    tiling = views(336)
    overshoots = []
    for width, height in random_sizes():
        tiles = tiling.tile_geometry(width, height)
        canvas_w, canvas_h = tiles.canvas_width, tiles.canvas_height
        image = np.broadcast_to(np.zeros(1, dtype=np.uint8), (height, width, 3))  # only its shape is read
        hf_h, hf_w = _get_patch_output_size(image, (canvas_h, canvas_w), ChannelDimension.LAST)
        ours = (tiles.resized_width, tiles.resized_height)
        if ours != (hf_w, hf_h):
            exact = (height * canvas_w % width == 0) if hf_w == canvas_w else (width * canvas_h % height == 0)
            assert exact and (hf_w + hf_h) - sum(ours) == 1, (width, height, ours, (hf_w, hf_h))
            overshoots.append((width, height))
        # centred as LLaVA-NeXT pads: (canvas - size) // 2 before
        assert (tiles.pad_x, tiles.pad_y) == ((canvas_w - ours[0]) // 2, (canvas_h - ours[1]) // 2)
    assert len(overshoots) < NUM_SIZES // 20, overshoots
    # the documented case, on the tiny canvas: 600 * (112 / 800) = 84.00000000000001 -> 85 in floats, 84 exactly
    image = np.broadcast_to(np.zeros(1, dtype=np.uint8), (600, 800, 3))
    assert _get_patch_output_size(image, (112, 112), ChannelDimension.LAST) == (85, 112)
    assert TileGeometry.fit(800, 600, (112, 112), 56).resized_height == 84
