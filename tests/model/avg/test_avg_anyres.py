"""Tiled (any-resolution) images end to end: the dataset builds the global view and the crops, the collate batches
images with different crop counts, and the model places [global grid][unpadded crop grid + row ends][box tokens] at
every granularity, with token counts equal to the hand-computed grids (tiny: 56 px crops of 4x4 tokens)."""
import json

import numpy as np
import pytest
import torch

from mg_llava.dataset import ImageViews, LLaVABoxDataset, llava_box_collate_fn
from mg_llava.dataset.anyres_views import AnyResImageViews
from mg_llava.model import AnyResTokens, MGLLaVAModel, ViewsDataPreprocessor
from mg_llava.testing.images import load_skimage
from mg_llava.testing.tiny_models import HIGH_RES

SIZES = [16, 8, 4, 2, 1]
# (rows, cols, W, H) and, per granularity, the tokens of [global grid][crop grid + row ends]. Worked by hand:
# chelsea 451x300 -> 112x112 canvas, 2x2 crops; its 8x8 crop-token grid keeps 300*2*8 // (451*2) = 5 -> rows 1..6
# (LLaVA-NeXT keeps grid - 2 * ((8 - 5) // 2) = 6 rows): 6 x 8 + 6 row ends = 54; pooled 1x2: 6 x 4 + 6 = 30;
# 2x2: the 4x4 grid keeps 2 rows: 2 x 4 + 2 = 10; 2x4: 2 x 2 + 2 = 6; 4x4: the 2x2 grid keeps 1 -> pad 0, 2 x 2 + 2 = 6.
# wide 400x80 -> 168x56 canvas, 1x3 crops; 4x12 grid keeps 80*3*4 // 400 = 2 rows (1..2): 2 x 12 + 2 = 26;
# 1x2: 2 x 6 + 2 = 14; 2x2: the 2x6 grid keeps 1 -> pad 0, 2 x 6 + 2 = 14; 2x4: 2 x 3 + 2 = 8; 4x4: 1 x 3 + 1 = 4.
TILES = {"chelsea": (2, 2, 451, 300), "wide": (1, 3, 400, 80)}
TOKENS = {"chelsea": [16 + 54, 8 + 30, 4 + 10, 2 + 6, 1 + 6], "wide": [16 + 26, 8 + 14, 4 + 14, 2 + 8, 1 + 4]}
BOXES = {"chelsea": [[40, 30, 200, 250], [220, 100, 440, 290]], "wide": [[10, 10, 120, 70]]}


@pytest.fixture(scope="module")
def datasets(tiny_models, tmp_path_factory):
    """The same three samples (chelsea, a wide image, text only) through plain and through tiled views."""
    from transformers import AutoTokenizer, CLIPImageProcessor
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE

    folder = tmp_path_factory.mktemp("anyres_data")
    load_skimage("chelsea").save(folder / "chelsea.png")
    load_skimage("astronaut").crop((50, 200, 450, 280)).save(folder / "wide.png")
    turn = lambda q, a: [{"from": "human", "value": q}, {"from": "gpt", "value": a}]  # noqa: E731
    samples = [dict(id="chelsea", image="chelsea.png", conversations=turn("<image>\nWhat is this?", "a cat")),
               dict(id="wide", image="wide.png", conversations=turn("<image>\nDescribe it.", "a strip of a photo")),
               dict(id="text", conversations=turn("What is two plus two?", "four"))]
    (folder / "data.json").write_text(json.dumps(samples))
    entries = [dict(id=k, boxes=v, scores=[0.9] * len(v), labels=[f"thing{i}" for i in range(len(v))])
               for k, v in BOXES.items()]
    (folder / "boxes.json").write_text(json.dumps(entries))
    processor = CLIPImageProcessor.from_pretrained(tiny_models["clip"])
    common = dict(image_folder=str(folder), data_path=str(folder / "data.json"), box_file=str(folder / "boxes.json"),
                  tokenizer=AutoTokenizer.from_pretrained(tiny_models["llm_vicuna"]), max_length=128, num_proc=1,
                  template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna))
    plain = LLaVABoxDataset(image_views=ImageViews(processor, high_res=HIGH_RES), **common)
    tiled = LLaVABoxDataset(image_views=AnyResImageViews(processor, high_res=HIGH_RES), **common)
    return plain, tiled


@pytest.fixture(scope="module")
def model(make_avg):
    return make_avg(anyres=dict(type=AnyResTokens)).eval()


def batch(dataset, finish=True):
    """chelsea, text only, wide: collated from the loader's uint8 views and, with ``finish``, through the model's
    data preprocessor (as the runner does)."""
    samples = {s["id"]: s for s in (dataset[i] for i in range(len(dataset)))}
    collated = llava_box_collate_fn([samples["chelsea"], samples["text"], samples["wide"]])
    if finish:
        collated = ViewsDataPreprocessor.from_image_views(dataset.image_views)(collated)
    return collated["data"]


def test_dataset_and_collate_hand_over_the_crops_and_boxes_follow_the_views(datasets):
    raw = batch(datasets[1], finish=False)
    assert raw["pixel_values_tiles"].dtype == torch.uint8 and raw["pixel_values_aux"].dtype == torch.uint8
    plain, tiled = (batch(d) for d in datasets)
    assert tiled["image_tiles"].tolist() == [list(TILES["chelsea"]), list(TILES["wide"])]
    assert tiled["pixel_values_tiles"].shape == (4 + 3, 3, 56, 56)
    assert "image_tiles" not in plain and "pixel_values_tiles" not in plain
    for key in ("pixel_values", "pixel_values_aux", "input_ids", "labels"):  # the global view is MG-LLaVA's own
        assert torch.equal(tiled[key], plain[key]), key
    assert len(tiled["boxes"]) == 2 and all(torch.equal(a, b) for a, b in zip(tiled["boxes"], plain["boxes"]))
    # chelsea's first box in high-res pixels: (x, y + (451 - 300) // 2) * 128 / 451
    np.testing.assert_allclose(tiled["boxes"][0][0].numpy(), np.array([40, 105, 200, 325]) * 128 / 451, rtol=1e-5)
    # the preprocessor finishes the crops bit for bit as the views do on the CPU (chat, evaluation); crop (0, 1) of
    # the wide image is the middle third of its 168x56 canvas
    views = datasets[1].image_views(load_skimage("astronaut").crop((50, 200, 450, 280)))
    torch.testing.assert_close(tiled["pixel_values_tiles"][4:], views.crops, rtol=0, atol=0)
    with pytest.raises(ValueError, match="all be tiled or none"):
        mixed = [datasets[1][0], datasets[0][1]]
        llava_box_collate_fn(mixed)


@torch.no_grad()
def test_tokens_per_image_equal_the_hand_computed_grids(datasets, model):
    data = batch(datasets[1])
    assert [len(b) for b in data["boxes"]] == [2, 1]
    text = data["attention_mask"].sum(1) - torch.tensor([1, 0, 1])  # the placeholders make way for the images
    for k in range(len(SIZES)):
        model.forced_granularity = k
        llm_inputs = model.prepare_llm_inputs(dict(data))
        visual = [TOKENS["chelsea"][k] + 2, TOKENS["wide"][k] + 1]
        assert model.last_visual_tokens == visual, k
        assert llm_inputs["attention_mask"].sum(1).tolist() == (text + torch.tensor([visual[0], 0, visual[1]])).tolist()
    model.forced_granularity = None

    # k = 0 placed by hand: [global grid][crop rows 1..6 of the 8x8 grid, each + image_newline][2 box tokens]
    model.forced_granularity = 0
    llm_inputs = model.prepare_llm_inputs(dict(data))
    model.forced_granularity = None
    crops = model.encode_crops(data["pixel_values_tiles"][:4])  # (4, 16, H), row-major crops of chelsea
    grid = crops.view(2, 2, 4, 4, -1).permute(0, 2, 1, 3, 4).reshape(8, 8, -1)[1:7]
    expected = torch.cat([grid, model.anyres.image_newline.expand(6, 1, -1)], dim=1).reshape(-1, grid.shape[-1])
    start = int((data["input_ids"][0] == -200).nonzero()) + SIZES[0]
    torch.testing.assert_close(llm_inputs["inputs_embeds"][0, start:start + 54], expected)
    encoded = model.encode_granularities(data)
    torch.testing.assert_close(llm_inputs["inputs_embeds"][0, start + 54:start + 56], encoded.boxes[0])

    # MG-LLaVA without the scaler takes the same tiles: the full grid, the crops, the boxes
    lengths = MGLLaVAModel.prepare_llm_inputs(model, dict(data))["attention_mask"].sum(1)
    assert lengths.tolist() == (text + torch.tensor([TOKENS["chelsea"][0] + 2, 0, TOKENS["wide"][0] + 1])).tolist()
    from mg_llava.inference.visual_tokens import visual_token_counts

    plain_model = type("Plain", (), dict(visual_encoder=model.visual_encoder, object_features=model.object_features,
                                         anyres=model.anyres))()
    samples = [dict(boxes=[data["boxes"][0]], image_tiles=[TILES["chelsea"]])]
    assert visual_token_counts(plain_model, samples) == [dict(visual_tokens=TOKENS["chelsea"][0] + 2,
                                                              granularity=[16], tile_tokens=54)]


def test_multi_granularity_loss_on_tiles_trains_the_row_end_token(datasets, make_avg):
    model = make_avg(anyres=dict(type=AnyResTokens)).train()
    data = batch(datasets[1])
    out = model(dict(data))
    assert torch.isfinite(out["loss"]) and sorted(k for k in out if k.startswith("lm_")) == sorted(
        f"lm_{n}" for n in SIZES)
    out["loss"].backward()
    assert model.anyres.image_newline.grad is not None and model.anyres.image_newline.grad.abs().sum() > 0
    assert "anyres.image_newline" in model.state_dict()
    with pytest.raises(ValueError, match="takes tiled images"):
        untiled = {k: v for k, v in data.items() if k not in ("image_tiles", "pixel_values_tiles")}
        model(untiled)


def test_rglf_on_tiles_trains_the_router_only(datasets, make_avg):
    model = make_avg(anyres=dict(type=AnyResTokens), stage="rglf").train()
    out = model(dict(batch(datasets[1])))
    (out["loss_router_ce"] + out["loss_router_rank"]).backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "router.voter" in reached and all(n.startswith("router.") for n in reached)
    assert {k.split(".")[0] for k in model.state_dict()} >= {"router", "anyres"}  # one file deploys


@torch.no_grad()
def test_router_averages_over_the_global_view_and_every_crop(datasets, make_avg):
    """As AVG-LLaVA's authors: each view of a tiled image (its global view, then its crops) is scored with the
    image's instruction tokens and the router's pre-norm scores are averaged over the views; ``views="global"``
    (the earlier reading) reads the global view only. Checked against the router run view by view by hand."""
    model = make_avg(anyres=dict(type=AnyResTokens)).eval()
    data = batch(datasets[1])
    encoded = model.encode_granularities(data)
    instruction, keep = model.instruction_tokens(data, encoded.grids[0])
    norm, model.router.norm = model.router.norm, torch.nn.Identity()
    expected = []
    for i, crops in enumerate(encoded.crops[0]):  # chelsea: 4 crops, wide: 3
        scores = [model.router([g[i:i + 1] for g in encoded.grids], instruction[i:i + 1], keep[i:i + 1])]
        for c in range(len(crops)):
            views = [crops_k[i][c:c + 1] for crops_k in encoded.crops]
            scores.append(model.router(views, instruction[i:i + 1], keep[i:i + 1]))
        assert len(scores) == 1 + TILES[["chelsea", "wide"][i]][0] * TILES[["chelsea", "wide"][i]][1]
        expected.append(torch.cat(scores).mean(dim=0))
    global_only = model.router(encoded.grids, instruction, keep)
    model.router.norm = norm
    logits = model.router_logits(data, encoded)
    torch.testing.assert_close(logits, norm(torch.stack(expected)))
    assert not torch.allclose(logits, norm(global_only), atol=1e-4)
    model.router.views = "global"
    torch.testing.assert_close(model.router_logits(data, encoded), norm(global_only))
    model.router.views = "all"
    model.prepare_llm_inputs(dict(data))
    assert model.last_granularities == logits.argmax(dim=1).tolist()
