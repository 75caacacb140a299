"""Fixtures for the data tests: tiny tokenizers/processor (tests/conftest.py) and a small image folder."""
import json

import datasets
import pytest

from dataset_helpers import write_boxes, write_jsonl

from mg_llava.testing.images import load_skimage

datasets.disable_progress_bars()

HIGH_RES = 128  # tiny geometry (real: 768); the tiny CLIP's processor gives the low-res side, 56
TEMPLATES = {"vicuna": "llm_vicuna", "phi3_chat": "llm_phi3", "llama3_chat": "llm_llama3", "chatml": "llm_yi"}


@pytest.fixture(scope="session")
def clip_processor(tiny_models):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor.from_pretrained(tiny_models["clip"])


@pytest.fixture(scope="session")
def views(clip_processor):
    from mg_llava.dataset import ImageViews

    return ImageViews(clip_processor, high_res=HIGH_RES)


@pytest.fixture(scope="session")
def tokenizers(tiny_models):
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(tiny_models[key]) for name, key in TEMPLATES.items()}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """chelsea.png (451x300, landscape), coffee_portrait.png (300x400), astronaut.jpg (512x512), broken.jpg."""
    folder = tmp_path_factory.mktemp("images")
    load_skimage("chelsea").save(folder / "chelsea.png")
    load_skimage("coffee").crop((150, 0, 450, 400)).save(folder / "coffee_portrait.png")
    load_skimage("astronaut").save(folder / "astronaut.jpg", quality=90)
    jpeg = (folder / "astronaut.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated mid-scan
    return str(folder)


@pytest.fixture
def make_dataset(views, tokenizers, image_folder, tmp_path):
    """Build an ``LLaVABoxDataset`` from sample dicts and box entries (tiny vicuna tokenizer by default)."""
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, LLaVABoxDataset

    def make(samples, box_entries=None, template="vicuna", name="data.jsonl", **kwargs):
        data_path = write_jsonl(tmp_path / name, samples) if name.endswith(".jsonl") else None
        if data_path is None:
            data_path = str(tmp_path / name)
            with open(data_path, "w") as f:
                json.dump(samples, f)
        box_file = write_boxes(tmp_path / "boxes.json", box_entries) if box_entries is not None else None
        options = dict(max_length=256, num_proc=1)
        options.update(kwargs)
        return LLaVABoxDataset(
            image_folder=image_folder,
            image_views=views,
            data_path=data_path,
            tokenizer=tokenizers[template],
            box_file=box_file,
            template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE[template]),
            **options,
        )

    return make


