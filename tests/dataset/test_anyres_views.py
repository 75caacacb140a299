"""Any-resolution tiling against hand-computed cases: best fit, canvas geometry, boxes, crops and unpadding (the model's
token assembly: tests/model/avg/test_avg_anyres.py)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mg_llava.dataset import ImageViews
from mg_llava.dataset.anyres_views import (
    LLAVA_NEXT_PINPOINTS,
    AnyResImageViews,
    TileGeometry,
    select_best_resolution,
    unpad_token_grid,
)

PROCESSOR = SimpleNamespace(image_mean=[0.5, 0.4, 0.3], image_std=[0.25, 0.25, 0.25], resample=3)


@pytest.mark.parametrize("size,best", [
    ((800, 600), (672, 672)),  # kept area 672x504 beats 448x336
    ((300, 900), (336, 1008)),  # scaled to exactly 336x1008: the whole image
    ((1000, 300), (1008, 336)),  # 1008x302 (capped at the image's own area)
    ((200, 200), (336, 672)),  # all keep 200x200; 336x672 and 672x336 waste the least, the first listed wins
])
def test_best_resolution(size, best):
    assert select_best_resolution(*size, LLAVA_NEXT_PINPOINTS) == best


def test_tile_geometry_and_boxes_hand_computed():
    tiles = TileGeometry.fit(800, 600, (672, 672), 336)
    # 672 / 800 = 0.84 < 672 / 600: width fills, height ceil(600 * 0.84) = 504, centred: (672 - 504) // 2 = 84
    assert (tiles.resized_width, tiles.resized_height, tiles.pad_x, tiles.pad_y) == (672, 504, 0, 84)
    assert (tiles.rows, tiles.cols) == (2, 2)
    box = [[100, 50, 300, 250]]
    np.testing.assert_allclose(tiles.to_canvas(box), [[84, 126, 252, 294]])
    np.testing.assert_allclose(tiles.to_crop(box, 0, 0), [[84, 126, 252, 294]])
    np.testing.assert_allclose(tiles.to_crop(box, 0, 1), [[0, 126, 0, 294]])  # not in the right crop: zero width
    # x: 600 * 0.84 = 504, 800 * 0.84 = 672; y: 400 * 0.84 + 84 = 420, 600 * 0.84 + 84 = 588
    np.testing.assert_allclose(tiles.to_canvas([[600, 400, 800, 600]]), [[504, 420, 672, 588]])
    np.testing.assert_allclose(tiles.to_crop([[600, 400, 800, 600]], 1, 1), [[168, 84, 336, 252]])


def test_views_global_view_and_high_res_are_mg_llavas_and_crops_tile_the_canvas():
    image = Image.fromarray(np.full((600, 800, 3), (200, 10, 90), dtype=np.uint8))
    plain = ImageViews(PROCESSOR, high_res=128, low_res=56)
    anyres = AnyResImageViews(PROCESSOR, high_res=128, low_res=56)
    assert anyres.grid_pinpoints == ((56, 112), (112, 56), (112, 112), (168, 56), (56, 168))
    views, reference = anyres(image), plain(image)
    tiles = views.tiles
    # 800x600 on the 112x112 canvas: 112 x ceil(600 * 0.14) = 84, pasted at y = (112 - 84) // 2 = 14
    assert (tiles.canvas_width, tiles.canvas_height, tiles.resized_height, tiles.pad_y) == (112, 112, 84, 14)
    assert views.crops.shape == (4, 3, 56, 56) and views.tile_row == (2, 2, 800, 600)
    torch.testing.assert_close(views.pixel_values, reference.pixel_values, rtol=0, atol=0)
    torch.testing.assert_close(views.pixel_values_aux, reference.pixel_values_aux, rtol=0, atol=0)
    assert views.geometry == reference.geometry  # boxes reach the object branch exactly as without tiling
    mean, std = torch.tensor(PROCESSOR.image_mean), torch.tensor(PROCESSOR.image_std)
    fill = (torch.tensor([int(m * 255) for m in PROCESSOR.image_mean]) / 255 - mean) / std
    colour = (torch.tensor([200, 10, 90]) / 255 - mean) / std
    top_left, bottom_left = views.crops[0], views.crops[2]  # crops (0, 0) and (1, 0)
    torch.testing.assert_close(top_left[:, :14], fill.view(3, 1, 1).expand(3, 14, 56))  # canvas padding
    torch.testing.assert_close(top_left[:, 14:], colour.view(3, 1, 1).expand(3, 42, 56))
    torch.testing.assert_close(bottom_left[:, :42], colour.view(3, 1, 1).expand(3, 42, 56))  # 14 + 84 = 98 = 56 + 42
    torch.testing.assert_close(bottom_left[:, 42:], fill.view(3, 1, 1).expand(3, 14, 56))


def test_crops_are_row_major_pieces_of_the_canvas():
    # a 112x112 image fills its 112x112 canvas: crop k is quadrant (k // 2, k % 2); a distinct grey per quadrant
    array = np.zeros((112, 112, 3), dtype=np.uint8)
    for k, grey in enumerate((10, 80, 150, 220)):
        r, c = divmod(k, 2)
        array[r * 56:(r + 1) * 56, c * 56:(c + 1) * 56] = grey
    views = AnyResImageViews(PROCESSOR, high_res=128, low_res=56, grid_pinpoints=[(112, 112)])(Image.fromarray(array))
    for k, grey in enumerate((10, 80, 150, 220)):
        crop = views.crops[k]
        centre = crop[:, 8:48, 8:48]  # away from the resampling's borders between quadrants
        expected = (grey / 255 - torch.tensor(PROCESSOR.image_mean)) / torch.tensor(PROCESSOR.image_std)
        torch.testing.assert_close(centre, expected.view(3, 1, 1).expand_as(centre))


def test_unpadding_hand_computed():
    grid = torch.arange(48 * 48).view(48, 48, 1)
    # 800x600 on 2x2 crops of 24 tokens: 48 * 600 / 800 = 36 image rows, (48 - 36) // 2 = 6 padding rows each side
    torch.testing.assert_close(unpad_token_grid(grid, 800, 600), grid[6:42])
    # a tall 300x900 image on 3x1 crops: aspect equal, nothing to drop
    tall = torch.arange(72 * 24).view(72, 24, 1)
    torch.testing.assert_close(unpad_token_grid(tall, 300, 900), tall)
    # 400x900 on 1x2 (wide canvas): 24 * 400 / 900 = 10 columns of 48 hold image, (48 - 10) // 2 = 19 dropped
    wide = torch.arange(24 * 48).view(24, 48, 1)
    torch.testing.assert_close(unpad_token_grid(wide, 400, 900), wide[:, 19:29])


def test_unpadding_of_pooled_grids_follows_the_canvas():
    # 800x600 on a 2x2 canvas, crops pooled 1x2: the 48x24 grid's cells are twice as wide as tall; rows are dropped
    # as on the full 48x48 grid (6 each side), not by the grid's own 2:1 aspect (which would drop columns)
    pooled = torch.arange(48 * 24).view(48, 24, 1)
    torch.testing.assert_close(unpad_token_grid(pooled, 800, 600, canvas=(2, 2)), pooled[6:42])
    # the same rule on square cells, stated as a canvas, is the default
    grid = torch.arange(48 * 48).view(48, 48, 1)
    torch.testing.assert_close(unpad_token_grid(grid, 800, 600, canvas=(672, 672)), unpad_token_grid(grid, 800, 600))
