"""Drawing boxes and labels, and the grid of samples."""
import pytest
from PIL import Image

from mg_llava.boxgen.draw import draw_boxes, draw_samples, label_color, make_grid
from mg_llava.testing.images import load_skimage


def test_boxes_are_drawn_in_their_label_colour_at_their_pixels():
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    record = dict(id="x", boxes=[[50, 40, 150, 90]], scores=[0.87], labels=["cat"])
    drawn = draw_boxes(image, record)
    assert drawn.size == image.size and image.getpixel((100, 89)) == (0, 0, 0)  # the input is left alone
    colour = label_color("cat")
    assert drawn.getpixel((100, 89)) == colour  # bottom edge of the box
    assert drawn.getpixel((150, 65)) == colour  # right edge
    assert drawn.getpixel((100, 65)) == (0, 0, 0)  # inside stays untouched
    assert drawn.getpixel((10, 10)) == (0, 0, 0)  # outside too
    assert label_color("cat") == colour and label_color("dog") != colour


def test_grid_png_of_samples(tmp_path):
    images = [load_skimage(n) for n in ("astronaut", "coffee", "rocket")]
    records = [dict(id=str(k), boxes=[[10, 10, 100, 120]], scores=[0.5], labels=["thing"]) for k in range(3)]
    path = draw_samples(records, images, str(tmp_path / "grid.png"), cell=128, cols=2)
    with Image.open(path) as grid:
        assert grid.size == (2 * 128, 2 * (128 + 20))
    with pytest.raises(ValueError, match="no images"):
        make_grid([])
