"""Taggers: CLIP over a vocabulary, fixed names, and the RAM++ adapter (absent package; its call contract)."""
import sys
import types

import pytest
import torch

from mg_llava.boxgen.images import to_uint8_tensor
from mg_llava.boxgen.taggers import CLIPTagger, FixedTagger, RAMPlusTagger
from mg_llava.boxgen.taggers.clip import clip_pixel_values
from mg_llava.boxgen.vocab import EmptyVocabularyError, load_vocabulary
from mg_llava.registry import MODELS
from mg_llava.testing.images import load_skimage


@pytest.fixture(scope="module")
def images():
    return [to_uint8_tensor(load_skimage(n)) for n in ("astronaut", "coffee", "rocket")]


def test_clip_tagger_returns_top_k_vocabulary_entries_most_likely_first(tiny_models, images):
    tagger = CLIPTagger(tiny_models["clip"], vocabulary="lvis", top_k=4, min_prob=0.0)
    tags = tagger.tag(images)
    lvis = set(load_vocabulary("lvis"))
    assert len(tags) == 3 and all(len(t) == 4 and set(t) <= lvis for t in tags)
    # most likely first: recompute the probabilities for the first image
    probs = _probs(tagger, images[0])
    vocab_index = {name: i for i, name in enumerate(tagger.vocabulary)}
    chosen = [probs[vocab_index[t]].item() for t in tags[0]]
    assert chosen == sorted(chosen, reverse=True) and chosen[0] == pytest.approx(probs.max().item())


def _probs(tagger, image):
    pixels = clip_pixel_values(image, tagger.resize, tagger.crop, tagger.mean, tagger.std)[None]
    with torch.no_grad():
        embeds = torch.nn.functional.normalize(tagger.model.get_image_features(pixel_values=pixels), dim=-1)
    return (tagger.model.logit_scale.exp() * embeds @ tagger.vocabulary_embeddings().T).softmax(-1)[0]


def test_clip_tagger_min_prob_can_leave_an_image_without_tags(tiny_models, images):
    tagger = CLIPTagger(tiny_models["clip"], vocabulary=["cat", "dog", "rocket"], top_k=3, min_prob=0.9)
    assert tagger.tag(images) == [[], [], []]  # three near-uniform random-weight classes: none reaches 0.9
    assert tagger.tag([]) == []


def test_clip_preprocessing_matches_the_clip_processor(tiny_models):
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_models["clip"])
    image = load_skimage("chelsea")  # 451 x 300, downsampled to the 56 px tiny input
    theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
    ip = processor.image_processor
    ours = clip_pixel_values(to_uint8_tensor(image), ip.size["shortest_edge"], ip.crop_size["height"],
                             ip.image_mean, ip.image_std)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 0.05


def test_fixed_tagger_gives_every_image_the_vocabulary(images):
    tagger = MODELS.build(dict(type="FixedTagger"))
    assert tagger.vocabulary == load_vocabulary("coco80") and len(tagger.vocabulary) == 80
    tags = tagger.tag(images)
    assert tags == [tagger.vocabulary] * 3
    tags[0].append("mutated")  # callers get copies
    assert "mutated" not in tagger.vocabulary
    assert FixedTagger(["cat", "cat", " dog "]).vocabulary == ["cat", "dog"]


def test_an_empty_tag_list_is_a_named_error(tmp_path, tiny_models):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(EmptyVocabularyError, match="empty"):
        FixedTagger([])
    with pytest.raises(EmptyVocabularyError, match="empty.txt"):
        FixedTagger(str(empty))
    with pytest.raises(EmptyVocabularyError):
        CLIPTagger(tiny_models["clip"], vocabulary=[" "])
    with pytest.raises(FileNotFoundError, match="neither a shipped name"):
        FixedTagger("no_such_vocabulary")


def test_ram_plus_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ram", None)  # as if not installed, even where it is
    monkeypatch.setitem(sys.modules, "ram.models", None)
    with pytest.raises(ImportError, match="recognize-anything"):
        RAMPlusTagger("ram_plus_swin_large_14m.pth")


def test_ram_plus_adapter_follows_the_ram_call_contract(monkeypatch, images):
    """A stand-in ``ram.models`` with RAM++'s interface: ``ram_plus(pretrained=, image_size=, vit=)`` returning a
    module whose ``generate_tag`` takes (B, 3, 384, 384) and returns B strings 'a | b' (and the Chinese ones)."""
    calls = {}

    class FakeRAMPlus(torch.nn.Module):
        tag_list = ["person", "rocket", "sky"]

        def generate_tag(self, pixels):
            calls["shape"] = tuple(pixels.shape)
            calls["mean"] = pixels.mean().item()
            return ["person | sky", "", "rocket"][:len(pixels)], ["人 | 天空", "", "火箭"][:len(pixels)]

    def ram_plus(pretrained, image_size, vit):
        calls["args"] = (pretrained, image_size, vit)
        return FakeRAMPlus()

    ram = types.ModuleType("ram")
    ram.models = types.SimpleNamespace(ram_plus=ram_plus)
    monkeypatch.setitem(sys.modules, "ram", ram)
    monkeypatch.setitem(sys.modules, "ram.models", ram.models)
    tagger = MODELS.build(dict(type="RAMPlusTagger", checkpoint="ckpt.pth"))
    assert calls["args"] == ("ckpt.pth", 384, "swin_l")
    assert tagger.vocabulary == ["person", "rocket", "sky"]
    assert tagger.tag(images) == [["person", "sky"], [], ["rocket"]]
    assert calls["shape"] == (3, 3, 384, 384)
    assert -1.5 < calls["mean"] < 1.5  # ImageNet-normalised, not raw 0..255
