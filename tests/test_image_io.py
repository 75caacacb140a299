"""The shared image decoder: unusual modes decode to the right picture (hand-made arrays with known values), EXIF
orientation is applied, and every decoder failure is an ImageDecodeError naming the file and the sample."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mg_llava.image_io import ImageDecodeError, open_image

GREY_16 = np.array([[0, 257, 32896], [65535, 1285, 0]], dtype=np.uint16)  # -> 0, 1, 128, 255, 5, 0


def _encode(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _grey(decoded):
    rgb = np.asarray(decoded.image)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_grey_is_scaled_by_its_bit_depth(mode, tmp_path):
    image = Image.frombytes(mode, (3, 2), GREY_16.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert image.mode == mode
    path = tmp_path / "grey16.tif"
    image.save(path)
    decoded = open_image(str(path))
    assert decoded.mode.startswith("I") and decoded.size == (3, 2)
    np.testing.assert_array_equal(_grey(decoded), [[0, 1, 128], [255, 5, 0]])


def test_16_bit_png_is_not_clipped_to_white():
    decoded = open_image(_encode(Image.fromarray(GREY_16)))
    np.testing.assert_array_equal(_grey(decoded), [[0, 1, 128], [255, 5, 0]])


def test_32_bit_integer_within_16_bits_by_depth_else_by_range(tmp_path):
    within = Image.fromarray(GREY_16.astype(np.int32))
    within.save(tmp_path / "i.tif")
    np.testing.assert_array_equal(_grey(open_image(str(tmp_path / "i.tif"))), [[0, 1, 128], [255, 5, 0]])
    wide = Image.fromarray(np.array([[-100, 0, 300]], dtype=np.int32))
    wide.save(tmp_path / "wide.tif")
    np.testing.assert_array_equal(_grey(open_image(str(tmp_path / "wide.tif"))), [[0, 64, 255]])


def test_float_grey_unit_range_and_real_range(tmp_path):
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    unit.save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(_grey(open_image(str(tmp_path / "unit.tif"))), [[0, 128, 255, 0]])
    hdr = Image.fromarray(np.array([[10.0, 20.0, 30.0]], dtype=np.float32))
    hdr.save(tmp_path / "hdr.tif")
    np.testing.assert_array_equal(_grey(open_image(str(tmp_path / "hdr.tif"))), [[0, 128, 255]])


def test_one_bit_la_cmyk_and_transparent_palette():
    bits = Image.fromarray(np.array([[True, False]]))
    np.testing.assert_array_equal(_grey(open_image(_encode(bits))), [[255, 0]])
    la = Image.fromarray(np.array([[[0, 255], [0, 0], [100, 128]]], dtype=np.uint8), "LA")
    np.testing.assert_array_equal(_grey(open_image(_encode(la))), [[0, 255, 177]])  # on white: transparent -> white
    cmyk = Image.fromarray(np.array([[[255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], dtype=np.uint8), "CMYK")
    rgb = np.asarray(open_image(_encode(cmyk, "TIFF")).image)
    np.testing.assert_array_equal(rgb[0], [[0, 255, 255], [0, 0, 0], [255, 255, 255]])
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    decoded = open_image(_encode(palette, transparency=0))
    np.testing.assert_array_equal(np.asarray(decoded.image)[0], [[255, 255, 255], [255, 0, 0]])


@pytest.mark.parametrize("orientation, upright", [(1, [[1, 2, 3], [4, 5, 6]]), (3, [[6, 5, 4], [3, 2, 1]]),
                                                  (6, [[4, 1], [5, 2], [6, 3]]), (8, [[3, 6], [2, 5], [1, 4]])])
def test_exif_orientation_is_applied(orientation, upright):
    stored = Image.fromarray(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8) * 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = open_image(_encode(stored, exif=exif))
    np.testing.assert_array_equal(_grey(decoded), np.array(upright) * 40)
    assert decoded.size == decoded.image.size


def _png_chunk(kind: bytes, data: bytes, crc=None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(ihdr: bytes, idat: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


GOOD_IHDR = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
DAMAGED = {
    "zlib stream": _png(GOOD_IHDR, b"\x78\x9c garbage that is not deflate"),
    "short IHDR": _png(b"\x00\x01", zlib.compress(b"\x00\x00\x00" * 2)),
    "bad CRC": b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", GOOD_IHDR, crc=1),
    "bad bit depth": _png(struct.pack(">IIBBBBB", 2, 2, 7, 0, 0, 0, 0), zlib.compress(b"\x00" * 6)),
    "no IDAT": b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", GOOD_IHDR) + _png_chunk(b"IEND", b""),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_png_is_our_error_naming_file_and_sample(name, tmp_path):
    path = tmp_path / "damaged.png"
    path.write_bytes(DAMAGED[name])
    with pytest.raises(ImageDecodeError, match=r"sample 'x': .*damaged.png: cannot") as info:
        open_image(str(path), where="sample 'x'")
    assert info.value.reason == "unreadable" and info.value.path == str(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="image file not found") as info:
        open_image(str(tmp_path / "nope.png"))
    assert info.value.reason == "missing"
    with pytest.raises(ImageDecodeError, match="cannot identify image"):
        open_image(str(tmp_path))


def test_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(ImageDecodeError("a.png: bad", "too_large", "a.png")))
    assert (str(err), err.reason, err.path) == ("a.png: bad", "too_large", "a.png")
