"""Table 5's fusion and object-merging ablations inside the tiny MG-LLaVA: token layout, what trains, saved keys."""
import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.inference.visual_tokens import visual_token_counts
from mg_llava.model import (
    BoxToFusedCrossAttention,
    FusedToBoxCrossAttention,
    PatchInfoMining,
    PerceiverResampler,
)

T = 16  # low-res tokens of a tiny image (4x4 grid)
STAGES = [40, 80, 160, 320]  # the tiny ConvNeXt's stage channels
TEXTS = [[1, IMG, 5, IMG], [6, 7], [IMG, 8]]
BOXES = [2, 0, 3]


def perturb(module, seed=0):
    """Move a module off its identity init so every weight gets a gradient."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)


def trains_exactly(model, data, prefixes):
    model.train()
    model(data)["loss"].backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
    assert trainable == reached == expected
    assert {k.split(".")[0] + "." for k in model.state_dict()} == set(prefixes)


def sample_records(data):
    """The samples of TEXTS as inference holds them: each one's boxes, per image."""
    return [dict(boxes=data["boxes"][:2]), dict(boxes=[]), dict(boxes=data["boxes"][2:])]


def test_patch_info_mining_reads_every_stage(make_model, make_batch):
    model = make_model(fusion=dict(type="PatchInfoMining"), freeze_llm=True)
    assert isinstance(model.fuse_module, PatchInfoMining) and model.fuse_module.in_channels == STAGES
    perturb(model.fuse_module)
    data = make_batch(TEXTS, box_counts=BOXES)
    inputs = model.prepare_llm_inputs(data)
    assert inputs["inputs_embeds"].shape[1] == 1 + 2 * T + 2 + 1  # grid + 2 boxes, text, grid
    trains_exactly(model, data, ("fuse_module.", "projector.", "bbox_projector."))


def test_resampler_gives_the_grid_count_or_fewer_tokens(make_model, make_batch):
    model = make_model(fusion=dict(type=PerceiverResampler, depth=1, num_heads=4), freeze_llm=True)
    assert model.fuse_module.num_tokens == T and model.projector.model[0].in_features == 32
    data = make_batch(TEXTS, box_counts=BOXES)
    assert model.prepare_llm_inputs(data)["inputs_embeds"].shape[1] == 1 + 2 * T + 2 + 1
    trains_exactly(model, data, ("fuse_module.", "projector.", "bbox_projector."))

    fewer = make_model(fusion=dict(type=PerceiverResampler, num_latents=5, depth=1, num_heads=4))
    inputs = fewer.prepare_llm_inputs(data)
    assert inputs["inputs_embeds"].shape[1] == 1 + 5 + 2 + 1 + 5
    assert [r["visual_tokens"] for r in visual_token_counts(fewer, sample_records(data))] == [5 + 2 + 5 + 0, 0, 5 + 3]
    with pytest.raises(ValueError, match="17 tokens per image, more than the 16 of the low-res grid"):
        make_model(fusion=dict(type=PerceiverResampler, num_latents=17, depth=1, num_heads=4))


def test_f_to_b_puts_no_box_tokens_in_the_sequence(make_model, make_batch):
    model = make_model(object_merge=dict(type=FusedToBoxCrossAttention, num_heads=4), freeze_llm=True)
    assert model.bbox_projector is None
    perturb(model.fuse_module)
    perturb(model.object_merge)
    data = make_batch(TEXTS, box_counts=BOXES)
    inputs = model.prepare_llm_inputs(data)
    assert inputs["inputs_embeds"].shape[1] == 1 + 2 * T + 1
    assert [r["visual_tokens"] for r in visual_token_counts(model, sample_records(data))] == [2 * T, 0, T]
    # the boxes change the image tokens themselves
    moved = dict(data, boxes=[b.flip(0) * 0.5 for b in data["boxes"]])
    assert not torch.allclose(model.prepare_llm_inputs(moved)["inputs_embeds"][0, 1:1 + T],
                              inputs["inputs_embeds"][0, 1:1 + T])
    trains_exactly(model, data, ("fuse_module.", "projector.", "object_merge."))


def test_b_to_f_appends_enhanced_box_tokens(make_model, make_batch):
    model = make_model(object_merge=dict(type=BoxToFusedCrossAttention, num_heads=4), freeze_llm=True)
    perturb(model.fuse_module)
    perturb(model.object_merge)
    data = make_batch(TEXTS, box_counts=BOXES)
    inputs = model.prepare_llm_inputs(data)
    assert inputs["inputs_embeds"].shape[1] == 1 + 2 * T + 2 + 1
    with torch.no_grad():  # the box tokens are the projected enhanced features, after the image's grid
        low = model.visual_encoder(data["pixel_values"])
        maps = model.visual_encoder_aux(data["pixel_values_aux"])
        fused = model.fuse_module(low, maps[-1])
        _, enhanced = model.object_merge(fused, model.object_features(maps, data["boxes"], (128, 128)))
        torch.testing.assert_close(inputs["inputs_embeds"][0, 1 + T:1 + T + 2], model.bbox_projector(enhanced[0]),
                                   rtol=1e-5, atol=1e-6)
    trains_exactly(model, data, ("fuse_module.", "projector.", "bbox_projector.", "object_merge."))


def test_object_merge_needs_object_features(make_model):
    with pytest.raises(ValueError, match="object_features is required"):
        make_model(object_features=None, object_merge=dict(type=FusedToBoxCrossAttention, num_heads=4))
