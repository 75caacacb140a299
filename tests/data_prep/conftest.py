"""Fixtures for the box-generation tests: real photos on disk, LLaVA-style annotations, tiny CLIP + OWLv2."""
import pytest

from boxgen_helpers import GOOD_IMAGES, write_llava

from mg_llava.testing.images import SKIMAGE_IMAGES, load_skimage


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """Real photos as files: JPEGs, a non-square crop, a grayscale PNG and an RGBA PNG."""
    root = tmp_path_factory.mktemp("photos")
    for name in SKIMAGE_IMAGES:
        load_skimage(name).save(root / f"{name}.jpg", quality=90)
    load_skimage("chelsea").crop((0, 0, 451, 200)).save(root / "wide.jpg", quality=90)
    load_skimage("camera").convert("L").save(root / "gray.png")
    rgba = load_skimage("coffee").convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "rgba.png")
    return str(root)


@pytest.fixture(scope="session")
def llava_file(photo_dir, tmp_path_factory):
    return write_llava(tmp_path_factory.mktemp("ann") / "llava.json", GOOD_IMAGES)


@pytest.fixture(scope="session")
def make_generator(tiny_models):
    """``make_generator(**detector_kwargs)``: a BoxGenerator with the tiny CLIP tagger (5 COCO tags per image; the
    short vocabulary keeps the tests fast) and the tiny OWLv2 at the released score threshold."""
    from mg_llava.registry import MODELS

    def make(tagger=None, **detector):
        tagger = tagger or dict(type="CLIPTagger", model=tiny_models["clip"], vocabulary="coco80", top_k=5,
                                min_prob=0.0)
        detector = dict(dict(type="OWLv2Detector", model=tiny_models["owlv2"], score_threshold=0.2), **detector)
        return MODELS.build(dict(type="BoxGenerator", tagger=tagger, detector=detector))

    return make


@pytest.fixture(scope="session")
def generator(make_generator):
    return make_generator()
