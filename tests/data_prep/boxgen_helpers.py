"""Helpers shared by the box-generation tests."""
import json
import os.path as osp

from PIL import Image

from mg_llava.testing.images import SKIMAGE_IMAGES

GOOD_IMAGES = [f"{n}.jpg" for n in SKIMAGE_IMAGES] + ["wide.jpg", "gray.png", "rgba.png"]


def write_llava(path, images, extra_rows=()):
    """A LLaVA training file: one sample per image (id ``img<k>``), plus ``extra_rows``."""
    rows = [dict(id=f"img{k}", image=name, conversations=[dict(value="<image>\nWhat is this?")])
            for k, name in enumerate(images)]
    rows += list(extra_rows)
    with open(path, "w") as f:
        json.dump(rows, f)
    return str(path)


def photo(photo_dir, name):
    return Image.open(osp.join(photo_dir, name))
