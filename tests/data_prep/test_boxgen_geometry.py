"""OWLv2's padded-square geometry: input pre-processing and the way back to original pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

from mg_llava.boxgen.geometry import owlv2_boxes_to_original, owlv2_pixel_values, round_boxes
from mg_llava.boxgen.images import to_uint8_tensor

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_boxes_map_back_by_the_long_side_with_no_offset():
    # A 300 x 200 (W x H) image pads to a 300 square at the bottom: the content is x in [0, 1], y in [0, 2/3].
    whole = torch.tensor([[0.5, 1 / 3, 1.0, 2 / 3]])
    assert owlv2_boxes_to_original(whole, height=200, width=300)[0].tolist() == pytest.approx([0, 0, 300, 200])
    # A tall 100 x 400 image: side 400, a box in the upper-left quarter of the square.
    box = torch.tensor([[0.125, 0.25, 0.25, 0.5]])
    assert owlv2_boxes_to_original(box, height=400, width=100)[0].tolist() == pytest.approx([0, 0, 100, 200])


def test_boxes_reaching_into_the_padding_are_clipped_and_dropped_when_empty():
    # Image 300 x 200: y beyond 200 is grey padding.
    boxes = torch.tensor([[0.5, 0.6, 0.2, 0.2],    # straddles the bottom edge -> clipped to y2 = 200
                          [0.5, 0.9, 0.2, 0.1]])   # wholly in the padding -> zero height after clipping
    mapped = owlv2_boxes_to_original(boxes, height=200, width=300)
    assert mapped[0].tolist() == pytest.approx([120, 150, 180, 200])
    assert mapped[1, 1] == mapped[1, 3] == 200
    kept, keep = round_boxes(mapped)
    assert kept == [[120, 150, 180, 200]] and keep.tolist() == [True, False]


def _bright_extent(pixel_values, size):
    """Normalised (cx, cy, w, h) of the pixels brighter than mid-grey in a (3, S, S) input."""
    mask = (pixel_values.mean(0) > 0.5).numpy()  # well above the grey padding (0)
    ys, xs = np.nonzero(mask)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return torch.tensor([[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]], dtype=torch.float32) / size


@pytest.mark.parametrize("width,height", [(480, 240), (200, 420)])
def test_a_drawn_rectangle_comes_back_to_its_pixels_through_both_preprocessors(width, height):
    """White rectangle on black; find it in the detector input (ours and transformers'), map it back."""
    from transformers import Owlv2ImageProcessor

    size = 96
    rect = (width // 5, height // 3, width // 2, height * 3 // 4)  # x1, y1, x2, y2
    array = np.zeros((height, width, 3), np.uint8)
    array[rect[1]:rect[3], rect[0]:rect[2]] = 255
    tol = 1.5 * max(width, height) / size  # one and a half input cells, in original pixels

    ours = owlv2_pixel_values(to_uint8_tensor(Image.fromarray(array)), size, MEAN, STD)
    theirs = Owlv2ImageProcessor(size={"height": size, "width": size}, image_mean=MEAN, image_std=STD)(
        images=array, return_tensors="pt")["pixel_values"][0]
    for values in (ours, theirs):
        assert values.shape == (3, size, size)
        found = owlv2_boxes_to_original(_bright_extent(values, size), height, width)[0]
        assert found.tolist() == pytest.approx(list(rect), abs=tol)
    # The padding is bottom/right grey: the last row (tall images: last column) is 0.5 before normalisation.
    edge = ours[:, -1, :] if width > height else ours[:, :, -1]
    assert torch.allclose(edge, torch.zeros_like(edge), atol=1e-5)


def test_our_preprocessing_stays_close_to_transformers():
    from transformers import Owlv2ImageProcessor

    from mg_llava.testing.images import load_skimage

    image = load_skimage("astronaut").crop((0, 0, 512, 300))
    processor = Owlv2ImageProcessor(size={"height": 128, "width": 128})
    theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
    ours = owlv2_pixel_values(to_uint8_tensor(image), 128, processor.image_mean, processor.image_std)
    diff = (ours - theirs).abs()
    assert diff.mean() < 0.02, diff.mean()  # normalised units (~0.005 in [0, 1] units)


def test_pixel_values_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        owlv2_pixel_values(torch.zeros(3, 10, 10), 64, MEAN, STD)
