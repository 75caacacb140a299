"""Decoding images: modes converted and recorded; missing, corrupt, truncated and huge images are named skips."""
import pytest
import torch
from PIL import Image

from mg_llava.boxgen.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_base64, open_rgb, to_uint8_tensor
from mg_llava.testing.images import load_skimage


def _image_in_mode(mode):
    if mode == "I;16":  # 16-bit grayscale (some scans and medical images)
        return Image.new("I;16", (40, 30), 1000)
    return load_skimage("camera").convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_any_mode_opens_as_rgb_and_reports_its_mode(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    _image_in_mode(mode).save(path)
    image, original = open_rgb(str(path))
    assert image.mode == "RGB" and original == mode
    tensor = to_uint8_tensor(image)
    assert tensor.shape == (3, image.height, image.width) and tensor.dtype == torch.uint8


def _skip(source, **kwargs):
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(source, **kwargs)
    return info.value


def test_missing_corrupt_and_truncated_files_are_named_skips(tmp_path):
    err = _skip(str(tmp_path / "nope.jpg"), where="sample 'a'")
    assert err.reason == "missing" and "sample 'a'" in str(err)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    assert _skip(str(garbage)).reason == "unreadable"
    whole = tmp_path / "whole.jpg"
    load_skimage("astronaut").save(whole, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[:5000])
    err = _skip(str(truncated))
    assert err.reason == "unreadable" and "truncated.jpg" in str(err)
    assert _skip(b"\x00" * 10).reason == "unreadable"
    with pytest.raises(ImageDecodeError, match="invalid base64"):
        decode_base64("abc", "sample 'q'")


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (9500, 9500)).save(path)  # 90.25 Mpx, a few KB on disk
    assert 9500 * 9500 > DEFAULT_MAX_PIXELS
    err = _skip(str(path))
    assert err.reason == "too_large" and "9500x9500" in str(err)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    assert _skip(str(small), max_pixels=5000).reason == "too_large"
    assert open_rgb(str(small), max_pixels=None)[0].size == (100, 100)
