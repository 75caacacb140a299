"""Inference with an AVG-LLaVA model: chat and evaluation report the visual tokens of each sample, and a forced
granularity (``--granularity``) replaces the router's choice."""
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer, CLIPImageProcessor

from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews
from mg_llava.inference.chat import ChatSession
from mg_llava.inference.cli import force_granularity
from mg_llava.inference.evaluate import ModelAnswerer, make_record
from mg_llava.inference.preprocess import Preprocessor
from mg_llava.inference.visual_tokens import summarize, visual_token_counts
from mg_llava.testing.images import load_skimage
from mg_llava.testing.tiny_models import HIGH_RES

SIZES = [16, 8, 4, 2, 1]


@pytest.fixture(scope="module")
def loaded(make_avg, tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llm_vicuna"])
    views = ImageViews(CLIPImageProcessor.from_pretrained(tiny_models["clip"]), high_res=HIGH_RES)
    preprocessor = Preprocessor(tokenizer, PROMPT_TEMPLATE.vicuna, views)
    return SimpleNamespace(model=make_avg().eval(), tokenizer=tokenizer, preprocessor=preprocessor,
                           device=torch.device("cpu"))


def samples(loaded, box_counts):
    out = []
    for i, n in enumerate(box_counts):
        boxes = dict(boxes=[[10 + 20 * k, 10, 60 + 20 * k, 80] for k in range(n)], scores=[0.9] * n,
                     labels=[f"thing{k}" for k in range(n)])
        image = loaded.preprocessor.prepare_image(load_skimage("coffee"), boxes)
        out.append(loaded.preprocessor.sample("What is this?", (), image, sample_id=str(i)))
    return out


def test_evaluation_records_the_routed_tokens_of_each_sample(loaded):
    answerer = ModelAnswerer(loaded, max_new_tokens=2)
    batch = samples(loaded, [2, 0, 1])
    results = answerer.answer(batch)
    chosen = loaded.model.last_granularities
    assert [r["granularity"] for r in results] == [[SIZES[k]] for k in chosen]
    assert [r["visual_tokens"] for r in results] == [SIZES[k] + n for k, n in zip(chosen, [2, 0, 1])]
    item = SimpleNamespace(id="q1", target=dict(answer="cup"))
    record = make_record("vqa", item, results[0])
    assert record["prediction"] == results[0]["prediction"] and record["visual_tokens"] == results[0]["visual_tokens"]
    summary = summarize([dict(visual_tokens=5, granularity=[4]), dict(visual_tokens=17, granularity=[16]), {}])
    assert summary == dict(samples=2, mean=11.0, min=5, max=17, granularity_usage={"16": 1, "4": 1})


def test_forced_granularity_in_chat(loaded):
    model = loaded.model
    force_granularity(model, 4)
    try:
        session = ChatSession(loaded, image=load_skimage("chelsea"), max_new_tokens=2)
        session.ask("What is this?")
        assert session.last_visual_tokens == dict(visual_tokens=4, granularity=[4])
    finally:
        model.forced_granularity = None
    with pytest.raises(SystemExit, match="no granularity has 5 tokens"):
        force_granularity(model, 5)
    with pytest.raises(SystemExit, match="needs an AVG-LLaVA model"):
        force_granularity(torch.nn.Linear(1, 1), 4)


def test_mg_llava_counts_the_whole_grid_and_the_boxes(loaded):
    # what visual_token_counts reads of an MG-LLaVA model: the CLIP grid and whether object tokens exist
    mg_llava = SimpleNamespace(visual_encoder=loaded.model.visual_encoder, object_features=object())
    batch = samples(loaded, [3, 0])
    assert visual_token_counts(mg_llava, batch) == [dict(visual_tokens=16 + 3, granularity=[16]),
                                                    dict(visual_tokens=16, granularity=[16])]
