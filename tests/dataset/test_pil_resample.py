"""mg_llava/dataset/pil_resample.py and image_views.square_view: Pillow's resize reproduced in torch, bit for bit,
for the one resize the views make (the padded square to S_high)."""
import numpy as np
import pytest
import torch
from PIL import Image

from mg_llava.dataset.image_views import ImageViews, square_view
from mg_llava.dataset.pil_resample import resample_weights, resize_square_like_pil
from mg_llava.testing.images import load_skimage

FILTERS = [Image.Resampling.BICUBIC, Image.Resampling.BILINEAR]


def as_tensor(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # (3, H, W), a channels-last view


@pytest.mark.parametrize("resample", FILTERS)
def test_square_resizes_equal_pillow_up_and_down(resample):
    rng = np.random.default_rng(0)
    photo = load_skimage("astronaut")  # 512 x 512
    cases = [(512, 768), (512, 128), (512, 336), (640, 768), (300, 128), (1000, 768), (97, 768), (768, 56),
             (1, 5), (5, 1), (2000, 768)]
    cases += [(int(rng.integers(1, 1200)), int(rng.integers(1, 900))) for _ in range(10)]
    for source, target in cases:
        image = photo.resize((source, source), Image.Resampling.NEAREST)
        if source % 2:  # half the cases on noise: every weight and both clipping ends matter
            image = Image.fromarray(rng.integers(0, 256, (source, source, 3), dtype=np.uint8))
        expected = np.array(image.resize((target, target), resample))
        got = resize_square_like_pil(as_tensor(image), target, resample)
        assert got.dtype == torch.uint8 and got.shape == (3, target, target)
        assert np.array_equal(got.permute(1, 2, 0).numpy(), expected), (source, target, resample)


def test_a_batch_is_resized_image_by_image():
    images = [load_skimage(name).convert("RGB").resize((200, 200)) for name in ("chelsea", "coffee", "rocket")]
    batch = torch.stack([as_tensor(image) for image in images])
    resized = resize_square_like_pil(batch, 96)
    for image, got in zip(images, resized):
        assert np.array_equal(got.permute(1, 2, 0).numpy(), np.array(image.resize((96, 96), Image.BICUBIC)))


def test_weights_sum_to_one_in_fixed_point_and_bad_input_is_refused():
    for in_size, out_size in ((640, 768), (4000, 768), (7, 3)):
        first, weights = resample_weights(in_size, out_size)
        assert np.all(np.abs(weights.sum(1) - (1 << 22)) <= weights.shape[1])
        assert first.min() >= 0 and first.max() < in_size
    with pytest.raises(ValueError, match="square"):
        resize_square_like_pil(torch.zeros(3, 4, 5, dtype=torch.uint8), 8)
    with pytest.raises(TypeError, match="uint8"):
        resize_square_like_pil(torch.zeros(3, 4, 4), 8)
    with pytest.raises(ValueError, match="LANCZOS"):
        resample_weights(4, 8, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("high_res", [768, 128])
def test_square_view_equals_the_loaders_pixels(clip_processor, high_res):
    views = ImageViews(clip_processor, high_res=high_res)
    coffee = load_skimage("coffee")  # 600 x 400
    images = [load_skimage("chelsea"), coffee.crop((150, 0, 450, 400)), load_skimage("astronaut"),
              coffee.crop((0, 100, 600, 250)), coffee.crop((10, 10, 11, 13)), load_skimage("rocket")]
    for image in images:
        decoded = views.decoded(image)
        assert decoded.pixels.shape == (3, image.height, image.width)
        assert decoded.geometry == views.pixels(image).geometry
        got = square_view(decoded.pixels, views.fill, views.high_res, views.resample)
        assert torch.equal(got, views.pixels(image).pixels), image.size
