import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.model import AVGLLaVAModel, MGLLaVAModel

SIZES = [16, 8, 4, 2, 1]  # tiny 4x4 grid: the granularities' token counts
VISION_SIDE = ("fuse_module.", "projector.", "bbox_projector.")
TEXTS = [[1, 5, IMG, 6, 7], [8, 9, 10], [IMG, 11, 12, IMG, 13]]  # a text-only sample and a two-image one
BOXES = [2, 1, 0]


def single_pass_loss(model, data, granularity):
    """MG-LLaVA's own forward (one LLM pass) on ``granularity``'s tokens."""
    model.forced_granularity = granularity
    try:
        return MGLLaVAModel.forward(model, dict(data))["loss"]
    finally:
        model.forced_granularity = None


def randomize_fusion(model):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.fuse_module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)


def grads_reached(model):
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@torch.no_grad()
def test_routed_inputs_hold_the_chosen_granularity_then_the_boxes(make_avg, make_batch):
    model = make_avg().eval()
    data = make_batch(TEXTS, BOXES)
    assert model.granularity_tokens == SIZES and model.granularity_index(4) == 2
    granularities, box_tokens, crops = model.encode_granularities(data)
    assert crops is None  # untiled images
    for k, size in enumerate(SIZES):
        model.forced_granularity = k
        llm_inputs = model.prepare_llm_inputs(dict(data))
        assert model.last_granularities == [k] * 3
        assert model.last_visual_tokens == [size + n for n in BOXES]
        lengths = llm_inputs["attention_mask"].sum(dim=1).tolist()
        assert lengths == [4 + size + 2, 3, 3 + 2 * size + 1]
        embeds = llm_inputs["inputs_embeds"]
        torch.testing.assert_close(embeds[0, 2:2 + size], granularities[k][0])
        torch.testing.assert_close(embeds[0, 2 + size:4 + size], box_tokens[0])
        torch.testing.assert_close(embeds[2, size + 1 + 2:2 * size + 1 + 2], granularities[k][2])
    model.forced_granularity = None
    model.prepare_llm_inputs(dict(data))
    chosen = model.last_granularities
    assert len(chosen) == 3 and model.last_visual_tokens == [SIZES[k] + n for k, n in zip(chosen, BOXES)]
    with pytest.raises(ValueError, match="no granularity has 5 tokens"):
        model.granularity_index(5)


def test_multi_granularity_loss_is_the_mean_of_one_pass_per_granularity(make_avg, make_batch):
    model = make_avg().eval()
    data = make_batch(TEXTS, BOXES)
    out = model(dict(data))
    with torch.no_grad():
        singles = [single_pass_loss(model, data, k) for k in range(len(SIZES))]
    torch.testing.assert_close(out["loss"], torch.stack(singles).mean())
    for size, single in zip(SIZES, singles):
        torch.testing.assert_close(out[f"lm_{size}"], single)
    # a text-only batch has one pass
    text_only = make_batch([[8, 9, 10]], [])
    torch.testing.assert_close(model(dict(text_only))["loss"], single_pass_loss(model, text_only, 0))


def test_multi_granularity_trains_llm_fusion_projectors_not_the_router(make_avg, make_batch):
    model = make_avg()
    randomize_fusion(model)
    model.train()
    model(make_batch(TEXTS, BOXES))["loss"].backward()
    expected = {n for n, _ in model.named_parameters() if n.startswith(VISION_SIDE + ("llm.",))}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert grads_reached(model) == expected
    assert {k.split(".")[0] for k in model.state_dict()} == {"fuse_module", "projector", "bbox_projector", "llm"}


def test_rglf_trains_only_the_router_and_saves_a_deployable_checkpoint(make_avg, make_batch):
    model = make_avg(stage="rglf")
    model.train()
    out = model(make_batch(TEXTS, BOXES))
    assert set(out) == {"loss_router_ce", "loss_router_rank", "router_acc"}
    (out["loss_router_ce"] + out["loss_router_rank"]).backward()
    router = {n for n, _ in model.named_parameters() if n.startswith("router.")}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == router
    assert grads_reached(model) == router
    assert {k.split(".")[0] for k in model.state_dict()} == {"fuse_module", "projector", "bbox_projector", "llm",
                                                            "router"}
    text_only = model(make_batch([[8, 9, 10]], []))
    assert text_only["loss_router_ce"].item() == 0.0 and text_only["loss_router_ce"].requires_grad


@torch.no_grad()
def test_per_sample_losses_equal_each_sample_alone(make_avg, make_batch):
    model = make_avg().eval()
    texts, boxes = [[1, 5, IMG, 6, 7, 8, 9], [IMG, 11, 12]], [2, 1]
    data = make_batch(texts, boxes)
    losses = model.per_sample_losses(data, model.encode_granularities(data))
    assert losses.shape == (2, len(SIZES))
    for b, (text, n) in enumerate(zip(texts, boxes)):
        alone = make_batch([text], [n])
        for key in ("pixel_values", "pixel_values_aux"):
            alone[key] = data[key][b:b + 1]
        alone["boxes"] = data["boxes"][b:b + 1]
        for k in range(len(SIZES)):
            torch.testing.assert_close(losses[b, k], single_pass_loss(model, alone, k))


def test_routing_passes_no_lm_gradient_to_the_router(make_avg, make_batch):
    """Neither stage trains the router through the language model (no straight-through selection): with the router
    the only trainable module (RGLF), the routed LM loss has no graph at all."""
    model = make_avg(stage="rglf").train()
    llm_inputs = model.prepare_llm_inputs(make_batch(TEXTS, BOXES))
    assert model.router.voter.requires_grad and not model.llm(**llm_inputs).loss.requires_grad


@torch.no_grad()
def test_plain_llava_variant_routes_grid_tokens_only(make_avg, make_batch):
    model = make_avg(plain=True).eval()
    assert model.visual_encoder_aux is None and model.bbox_projector is None
    model.forced_granularity = 3
    llm_inputs = model.prepare_llm_inputs(make_batch([[1, IMG, 5]], [0]))
    assert llm_inputs["attention_mask"].sum().item() == 2 + SIZES[3] and model.last_visual_tokens == [SIZES[3]]


@torch.no_grad()
def next_token_logprobs(model, data):
    """(B, K, V) log-probabilities of each sample's next token with each granularity's tokens."""
    encoded = model.encode_granularities(data)
    out = []
    for k in range(len(encoded.grids)):
        llm_inputs = model._place(data, model.image_tokens(data, encoded, [k] * len(encoded.boxes)))
        llm_inputs.pop("labels")
        last = llm_inputs["attention_mask"].sum(dim=1) - 1
        out.append(model.llm(**llm_inputs).logits[torch.arange(len(last)), last].log_softmax(-1))
    return torch.stack(out, dim=1)


def test_rglf_router_learns_the_granularity_with_the_lowest_loss(make_avg, make_batch):
    """Constructed case: with a sharpened LM head (x100), each answer token is the one whose log-probability with the
    target granularity's tokens most exceeds its best log-probability with any other granularity's, so the target
    has clearly the lowest loss on every sample. RGLF (router only, lr 1e-3) must teach the router to pick it,
    though it picked another before."""
    rglf = make_avg(plain=True, stage="rglf").eval()
    with torch.no_grad():
        rglf.llm.lm_head.weight.mul_(100)
    prompt = [[1, IMG, 5, 6, 7, 8], [1, IMG, 9, 10, 11, 12]]
    with torch.no_grad():
        rglf.prepare_llm_inputs(make_batch(prompt, [0, 0], seed=1))
    initial = rglf.last_granularities
    target = next(k for k in (2, 1, 3, 0, 4) if k not in initial)
    ids = [list(p) for p in prompt]
    for _ in range(4):
        logprobs = next_token_logprobs(rglf, make_batch(ids, [0, 0], seed=1))
        others = torch.cat([logprobs[:, :target], logprobs[:, target + 1:]], dim=1).max(dim=1).values
        for sample, token in zip(ids, (logprobs[:, target] - others).argmax(dim=-1).tolist()):
            sample.append(token)
    data = make_batch(ids, [0, 0], seed=1)
    data["labels"][:, :len(prompt[0])] = -100  # the constructed answers are the targets
    with torch.no_grad():
        lm = rglf.per_sample_losses(data, rglf.encode_granularities(data))
    others = torch.cat([lm[:, :target], lm[:, target + 1:]], dim=1)
    assert (lm[:, target] < others.min(dim=1).values - 0.3).all(), f"not a clear case: losses {lm}"

    rglf.train()
    optimizer = torch.optim.AdamW(rglf.router.parameters(), lr=1e-3, weight_decay=0)
    for _ in range(40):
        optimizer.zero_grad()
        out = rglf(dict(data))
        (out["loss_router_ce"] + out["loss_router_rank"]).backward()
        optimizer.step()
    rglf.eval()
    with torch.no_grad():
        rglf.prepare_llm_inputs(make_batch(prompt, [0, 0], seed=1))  # at inference: the prompt alone
    assert rglf.last_granularities == [target, target], f"losses {lm.tolist()}, started from {initial}"
