"""RGLF must teach the router a choice per sample, not one preference: two kinds of samples (their own image and
instruction) are built so that each kind's LM loss is lowest at a different granularity; after RGLF the router
must pick each kind's own best granularity. A router that learned a constant choice fails the check on one kind."""
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

PROMPTS = {"a": [1, IMG, 5, 6, 7, 8], "b": [1, IMG, 20, 21, 22, 23]}
KINDS = ["a", "b", "a", "b"]  # the batch: two samples of each kind
ANSWER_TOKENS = 4
STEPS = 40


def kind_images(make_batch, seed=7):
    """(4, 3, S, S): each kind's own random image, plus a little noise per sample."""
    generator = torch.Generator().manual_seed(seed)
    base = make_batch([PROMPTS["a"], PROMPTS["b"]], [0, 0], seed=seed)["pixel_values"]
    index = torch.tensor([0 if kind == "a" else 1 for kind in KINDS])
    return base[index] + 0.1 * torch.randn(base[index].shape, generator=generator)


def batch(make_batch, texts, images):
    data = make_batch(texts, [0] * len(texts), seed=1)
    data["pixel_values"] = images
    return data


@torch.no_grad()
def next_token_logprobs(model, data):
    """(B, K, V) log-probabilities of each sample's next token with each granularity's tokens forced."""
    out = []
    for k in range(len(model.granularity_tokens)):
        model.forced_granularity = k
        llm_inputs = model.prepare_llm_inputs(dict(data))
        model.forced_granularity = None
        llm_inputs.pop("labels")
        last = llm_inputs["attention_mask"].sum(dim=1) - 1
        logits = model.llm(**llm_inputs).logits
        out.append(logits[torch.arange(len(last)), last].log_softmax(-1))
    return torch.stack(out, dim=1)


@torch.no_grad()
def routed(model, data):
    """Each sample's granularity as the router chooses it at inference (the prompt alone, no labels: the router's
    instruction is every prompt token, as in training, where the prompt is what has no answer label)."""
    model.eval()
    model.prepare_llm_inputs({k: v for k, v in data.items() if k != "labels"})
    return model.last_granularities


def learned_both(choices, targets):
    """The check: every sample got its kind's target granularity (so both kinds' argmaxes, which differ)."""
    return list(choices) == [targets[kind] for kind in KINDS]


def test_rglf_router_learns_a_different_granularity_for_each_kind_of_sample(make_avg, make_batch):
    rglf = make_avg(plain=True, stage="rglf").eval()
    with torch.no_grad():
        rglf.llm.lm_head.weight.mul_(100)  # sharp next-token distributions: the constructed answers are clear-cut
    images = kind_images(make_batch)
    prompts = [PROMPTS[kind] for kind in KINDS]
    initial = routed(rglf, batch(make_batch, prompts, images))
    # each kind's target: a granularity no sample of that kind picked before, and not the other kind's
    order = (2, 1, 3, 0, 4)
    target_a = next(k for k in order if k not in [c for c, kind in zip(initial, KINDS) if kind == "a"])
    target_b = next(k for k in order if k != target_a and k not in [c for c, kind in zip(initial, KINDS)
                                                                     if kind == "b"])
    targets = {"a": target_a, "b": target_b}

    # answers: each token is the one whose log-probability with the sample's target granularity most exceeds its
    # best log-probability with any other granularity
    ids = [list(p) for p in prompts]
    for _ in range(ANSWER_TOKENS):
        logprobs = next_token_logprobs(rglf, batch(make_batch, ids, images))
        for b, kind in enumerate(KINDS):
            t = targets[kind]
            others = torch.cat([logprobs[b, :t], logprobs[b, t + 1:]]).max(dim=0).values
            ids[b].append(int((logprobs[b, t] - others).argmax()))
    data = batch(make_batch, ids, images)
    data["labels"][:, :len(prompts[0])] = -100  # the answers are the targets
    with torch.no_grad():
        lm = rglf.per_sample_losses(data, rglf.encode_granularities(data))  # (4, K)
    for b, kind in enumerate(KINDS):
        t = targets[kind]
        others = torch.cat([lm[b, :t], lm[b, t + 1:]])
        assert lm[b, t] < others.min() - 0.3, f"not a clear case: sample {b} ({kind}) losses {lm[b].tolist()}"
    assert not learned_both(initial, targets)

    rglf.train()
    optimizer = torch.optim.AdamW(rglf.router.parameters(), lr=1e-3, weight_decay=0)
    for _ in range(STEPS):
        optimizer.zero_grad()
        out = rglf(dict(data))
        (out["loss_router_ce"] + out["loss_router_rank"]).backward()
        optimizer.step()

    choices = routed(rglf, batch(make_batch, prompts, images))
    assert learned_both(choices, targets), (
        f"routed {choices}, targets {targets} (kinds {KINDS}), started from {initial}, losses {lm.tolist()}")
    # the check itself: no constant choice passes it
    assert not any(learned_both([k] * len(KINDS), targets) for k in range(len(rglf.granularity_tokens)))
