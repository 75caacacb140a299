"""Real photographs shipped with scikit-image, for tests and the demo (no downloads)."""
import functools

import numpy as np
from PIL import Image

# name -> what a caption may say about it; all ship inside scikit-image's package data.
SKIMAGE_IMAGES = {
    "astronaut": "an astronaut in a white suit in front of a flag",
    "chelsea": "an orange cat",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on a launch pad",
    "camera": "a man with a camera on a tripod",
    "coins": "many coins on a dark background",
}


@functools.lru_cache(maxsize=None)
def _skimage_rgb(name: str) -> np.ndarray:
    """(H, W, 3) uint8, read once per process (the synthetic videos read each photograph hundreds of times)."""
    from skimage import data

    array = getattr(data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = array.astype(np.uint8)
    array.flags.writeable = False
    return array


def load_skimage(name: str) -> Image.Image:
    """Return a packaged scikit-image photograph as an RGB ``PIL.Image`` (a new image each call)."""
    return Image.fromarray(_skimage_rgb(name)).convert("RGB")
