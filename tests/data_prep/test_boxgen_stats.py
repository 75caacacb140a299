"""The boxes-per-image histogram (the paper's Table 6 buckets) and its chart."""
import pytest
from PIL import Image

from mg_llava.boxgen.stats import BOX_COUNT_BUCKETS, box_count_histogram, bucket_of, plot_histogram


def test_bucket_edges():
    edges = {0: "0", 1: "1-10", 10: "1-10", 11: "11-20", 20: "11-20", 21: "21-30", 30: "21-30", 31: "31-50",
             50: "31-50", 51: ">50", 500: ">50"}
    assert {n: bucket_of(n) for n in edges} == edges
    with pytest.raises(ValueError):
        bucket_of(-1)


def test_histogram_counts_every_image_once_in_bucket_order():
    hist = box_count_histogram([0, 0, 3, 10, 11, 25, 40, 51, 99])
    assert list(hist) == [label for label, _, _ in BOX_COUNT_BUCKETS]
    assert hist == {"0": 2, "1-10": 2, "11-20": 1, "21-30": 1, "31-50": 1, ">50": 2}


def test_histogram_png(tmp_path):
    path = plot_histogram({"0": 43654, "1-10": 184706, "11-20": 91245, "21-30": 34648, "31-50": 22827,
                           ">50": 12645}, str(tmp_path / "table6.png"))
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (640, 360)
        colours = png.convert("RGB").getcolors(maxcolors=1 << 16)
    assert any(rgb == (0x4C, 0x72, 0xB0) for _, rgb in colours)  # the bars were drawn
