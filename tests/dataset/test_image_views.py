"""Both image views against independent implementations, and the geometry against hand-computed cases."""
import numpy as np
import pytest
import torch
from conftest import HIGH_RES
from PIL import Image

from mg_llava.dataset import ImageViews, ViewGeometry, load_image
from mg_llava.testing.images import load_skimage


@pytest.mark.parametrize(
    "size, high_res, expected",
    [
        # W x H = 640 x 480 -> square 640, image pasted 80 px down, 768 / 640 = 1.2
        ((640, 480), 768, dict(pad_x=0, pad_y=80, side=640, scale=1.2)),
        # portrait 300 x 500 -> square 500, pasted 100 px right, 768 / 500 = 1.536
        ((300, 500), 768, dict(pad_x=100, pad_y=0, side=500, scale=1.536)),
        # odd difference: (451 - 300) // 2 = 75 (the extra pixel of padding goes below)
        ((451, 300), 128, dict(pad_x=0, pad_y=75, side=451, scale=128 / 451)),
        ((512, 512), 768, dict(pad_x=0, pad_y=0, side=512, scale=1.5)),
    ],
)
def test_geometry_hand_computed(size, high_res, expected):
    geometry = ViewGeometry.for_image(*size, high_res=high_res)
    assert (geometry.width, geometry.height) == size
    for key, value in expected.items():
        assert getattr(geometry, key) == pytest.approx(value), key


def test_image_rect_in_high_res_pixels():
    # 640 x 480 at 768: image rows 80..560 of the 640 square -> 96..672 of the 768 view; full width.
    assert ViewGeometry.for_image(640, 480, 768).image_rect() == pytest.approx((0, 96, 768, 672))
    # 300 x 500: columns 100..400 of the 500 square -> 153.6..614.4
    assert ViewGeometry.for_image(300, 500, 768).image_rect() == pytest.approx((153.6, 0, 614.4, 768))


def _reference_high_res(image, high_res, mean, std):
    """The released pipeline, independently: XTuner's expand2square + a fresh CLIPImageProcessor at high_res."""
    from transformers import CLIPImageProcessor
    from xtuner.dataset.utils import expand2square

    processor = CLIPImageProcessor(
        size={"shortest_edge": high_res}, crop_size={"height": high_res, "width": high_res},
        image_mean=mean, image_std=std,
    )
    square = expand2square(image, tuple(int(m * 255) for m in mean))
    return processor.preprocess(square, return_tensors="pt")["pixel_values"][0]


def assert_equals_processor(actual, expected):
    """The CLIP processor's output, after normalisation, to 1e-6 (w13's faster views must keep this)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == torch.float32
    assert (actual - expected).abs().max() <= 1e-6, (actual - expected).abs().max()


def _photo(name, size=None, crop=None):
    image = load_skimage(name)
    if crop:
        image = image.crop(crop)
    return image.resize(size, Image.Resampling.LANCZOS) if size else image


# Real photographs of different aspect ratios and sizes, up- and downsampled to 768.
PHOTOS = {
    "rocket 640x427": dict(name="rocket"),
    "coffee portrait 300x400": dict(name="coffee", crop=(150, 0, 450, 400)),
    "astronaut square 512": dict(name="astronaut"),
    "chelsea 451x300": dict(name="chelsea"),
    "camera large 1600x1200": dict(name="camera", size=(1600, 1200)),
    "coins tall 303x1000": dict(name="coins", size=(303, 1000)),
}


@pytest.mark.parametrize("photo", list(PHOTOS))
def test_high_res_view_is_the_clip_processor_output(clip_processor, photo):
    views = ImageViews(clip_processor, high_res=768, low_res=336)
    image = _photo(**PHOTOS[photo])
    out = views(image)
    expected = _reference_high_res(image, 768, clip_processor.image_mean, clip_processor.image_std)
    assert out.pixel_values.shape == (3, 336, 336)
    assert_equals_processor(out.pixel_values_aux, expected)
    low = torch.nn.functional.interpolate(expected[None], size=(336, 336), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out.pixel_values, low, rtol=0, atol=1e-6)  # released low-res: the 768 view resized


def test_unsupported_resample_filter_is_rejected(clip_processor):
    from transformers import CLIPImageProcessor

    with pytest.raises(ValueError, match="resample filter LANCZOS is not supported"):
        ImageViews(CLIPImageProcessor(resample=Image.Resampling.LANCZOS), high_res=768)


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) interpolation weights of a half-pixel-centred (align_corners=False) linear resize."""
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        left = min(int(np.floor(x)), n_in - 1)
        right = min(left + 1, n_in - 1)
        frac = x - left
        weights[i, left] += 1 - frac
        weights[i, right] += frac
    return weights


@pytest.mark.parametrize("name, crop", [("chelsea", None), ("coffee", (150, 0, 450, 400)), ("astronaut", None)])
def test_views_match_independent_resizes(views, clip_processor, name, crop):
    image = load_skimage(name)
    if crop:
        image = image.crop(crop)  # portrait 300 x 400
    out = views(image)

    expected_aux = _reference_high_res(image, HIGH_RES, clip_processor.image_mean, clip_processor.image_std)
    assert_equals_processor(out.pixel_values_aux, expected_aux)

    matrix = _bilinear_matrix(HIGH_RES, views.low_res)
    aux = out.pixel_values_aux.double().numpy()
    expected_low = np.einsum("oh,chw,pw->cop", matrix, aux, matrix)
    assert out.pixel_values.shape == (3, 56, 56)
    np.testing.assert_allclose(out.pixel_values.numpy(), expected_low, atol=1e-4)  # float32 weights

    assert out.geometry == ViewGeometry.for_image(*image.size, high_res=HIGH_RES)


def test_padding_is_the_mean_colour(views, clip_processor):
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    aux = views(image).pixel_values_aux
    mean, std = np.array(clip_processor.image_mean), np.array(clip_processor.image_std)
    fill = (np.floor(mean * 255) / 255 - mean) / std  # int(mean * 255), normalised: close to 0, not exactly
    # the image occupies rows 32..96 of the 128 view; rows 0..30 are padding only
    np.testing.assert_allclose(aux[:, :30].mean(dim=(1, 2)).numpy(), fill, atol=1e-5)
    red = (np.array([1.0, 0, 0]) - mean) / std
    np.testing.assert_allclose(aux[:, 40:88].mean(dim=(1, 2)).numpy(), red, atol=1e-4)


def test_processor_is_read_not_modified(clip_processor):
    before = clip_processor.to_dict()
    views = ImageViews(clip_processor, high_res=768)
    views(load_skimage("coins"))
    assert clip_processor.to_dict() == before
    assert views.low_res == 56 and views.high_res == 768
    assert not any(value is clip_processor for value in vars(views).values())


def test_low_res_must_not_exceed_high_res(clip_processor):
    with pytest.raises(ValueError, match="low_res=56, high_res=32"):
        ImageViews(clip_processor, high_res=32)


def test_large_jpegs_are_decoded_at_full_size_unless_asked(views, clip_processor, tmp_path):
    big = load_skimage("astronaut").resize((1024, 768))
    path = str(tmp_path / "big.jpg")
    big.save(path, quality=95)
    decoded = Image.open(path).convert("RGB")

    full = views.load(path)  # the default: what the processor sees
    expected = _reference_high_res(decoded, HIGH_RES, clip_processor.image_mean, clip_processor.image_std)
    assert_equals_processor(full.pixel_values_aux, expected)

    reduced, size = load_image(path, min_side=HIGH_RES)
    assert size == (1024, 768)
    assert reduced.size == (256, 192)  # 1/4 DCT scale: the long side stays >= 2 * 128
    fast_views = ImageViews(clip_processor, high_res=HIGH_RES, reduced_jpeg_decode=True)
    fast = fast_views.load(path)
    assert fast.geometry == full.geometry == ViewGeometry.for_image(1024, 768, HIGH_RES)
    assert torch.equal(fast.pixel_values_aux, fast_views(reduced).pixel_values_aux)
    assert 0 < (fast.pixel_values_aux - full.pixel_values_aux).abs().mean() < 0.05


def test_missing_and_corrupt_files_raise(views, image_folder, tmp_path):
    from mg_llava.image_io import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="nope.jpg: image file not found"):
        views.load(str(tmp_path / "nope.jpg"))
    with pytest.raises(ImageDecodeError, match="broken.jpg: cannot decode image"):
        views.load(f"{image_folder}/broken.jpg")
