"""BoxGenerator: the one-image call the chat tool uses, registry names, shipped vocabularies."""
import pytest
import torch

from mg_llava.boxgen import BoxGenerator, CLIPTagger, FixedTagger, OWLv2Detector, RAMPlusTagger
from mg_llava.boxgen.images import to_uint8_tensor
from mg_llava.boxgen.vocab import load_vocabulary
from mg_llava.registry import MODELS
from mg_llava.testing.images import load_skimage


def test_one_pil_image_in_any_mode_gives_released_fields(generator):
    image = load_skimage("camera").convert("L")
    result = generator(image)
    assert set(result) == {"boxes", "scores", "labels"}
    assert result["boxes"] and all(0 <= b[0] < b[2] <= image.width and 0 <= b[1] < b[3] <= image.height
                                   for b in result["boxes"])
    full = generator.generate([to_uint8_tensor(image)])[0]
    assert full["boxes"] == result["boxes"] and set(result["labels"]) <= set(full["tags"])


def test_every_module_resolves_by_name_and_through_xtuner(tiny_models):
    from xtuner.registry import BUILDER

    for cls in (BoxGenerator, OWLv2Detector, CLIPTagger, FixedTagger, RAMPlusTagger):
        assert MODELS.get(cls.__name__) is cls
    built = BUILDER.build(dict(type="mg_llava.BoxGenerator", tagger=dict(type="mg_llava.FixedTagger"),
                               detector=dict(type=OWLv2Detector, model=tiny_models["owlv2"])))
    assert isinstance(built, BoxGenerator) and isinstance(built.tagger, FixedTagger)
    # the fixed vocabulary was encoded up front
    assert set(built.detector._text_embeds) == set(load_vocabulary("coco80"))


def test_describe_names_the_settings_a_resume_must_match(generator):
    description = generator.describe()
    assert description["tagger"]["type"] == "CLIPTagger" and description["tagger"]["vocabulary_size"] == 80
    assert description["detector"]["score_threshold"] == 0.2
    assert description["detector"]["prompt"] == "a photo of {tag}"


def test_shipped_vocabularies():
    lvis, coco = load_vocabulary("lvis"), load_vocabulary("coco80")
    assert len(lvis) == 1198 == len(set(lvis))  # LVIS v1's 1203 categories, 5 repeated first names merged
    assert lvis[:3] == ["aerosol can", "air conditioner", "airplane"] and lvis[-1] == "zucchini"
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
    assert not any(name.startswith("#") for name in lvis + coco)


def test_a_tagger_returning_the_wrong_count_is_caught(generator, monkeypatch):
    monkeypatch.setattr(generator.tagger, "tag", lambda images: [["cat"]])
    with pytest.raises(ValueError, match="1 tag lists for 2 images"):
        generator.generate([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2)
