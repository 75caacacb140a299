"""How many visual tokens the LLM saw for each sample: the router's choice on AVG-LLaVA models, the whole grid
plus one token per box on MG-LLaVA; tiled images add their crop grid (``tile_tokens``)."""
import math
from typing import List, Sequence


def grid_tokens(model) -> int:
    """Grid tokens per image before any pooling (576 for CLIP ViT-L/14 at 336)."""
    config = model.visual_encoder.config
    return (config.image_size // config.patch_size) ** 2


def visual_token_counts(model, samples: Sequence[dict]) -> List[dict]:
    """Per sample of the batch ``model.prepare_llm_inputs`` last placed (``samples`` in the dataset's format):
    ``{"visual_tokens": grid + box tokens of all its images, "granularity": [grid tokens of each image]}``, and for
    a sample with tiled images ``"tile_tokens"``: the tokens of their crop grids (included in ``visual_tokens``)."""
    boxes = [b for sample in samples for b in sample["boxes"]]
    # box tokens: one per box unless the model has none (no object features, or F-to-B cross-attention)
    appends_boxes = model.object_features is not None and getattr(getattr(model, "object_merge", None),
                                                                  "appends_boxes", True)
    boxes_per_image = [len(b) for b in boxes] if appends_boxes else [0] * len(boxes)
    if hasattr(model, "last_visual_tokens"):  # AVG-LLaVA: what the router (or --granularity) chose
        tokens = list(model.last_visual_tokens)
        granularities = [model.granularity_tokens[k] for k in model.last_granularities]
    else:
        grid = grid_tokens(model)
        side = math.isqrt(grid)
        tiles = [t for sample in samples for t in sample.get("image_tiles", ())]
        crops = [model.anyres.num_tokens(t, (side, side)) for t in tiles] if tiles else [0] * len(boxes)
        fused = getattr(getattr(model, "fuse_module", None), "num_tokens", grid)  # a Perceiver Resampler's latents
        tokens = [fused + n + c for n, c in zip(boxes_per_image, crops)]
        granularities = [fused] * len(boxes)
    if len(tokens) != len(boxes):
        raise RuntimeError(f"the model placed {len(tokens)} images but the samples hold {len(boxes)}; count the "
                           f"tokens right after generating for these samples")
    out, start = [], 0
    for sample in samples:
        end = start + len(sample["boxes"])
        out.append(dict(visual_tokens=sum(tokens[start:end]), granularity=granularities[start:end]))
        if sample.get("image_tiles"):
            out[-1]["tile_tokens"] = sum(tokens[start:end]) - sum(granularities[start:end]) - sum(
                boxes_per_image[start:end])
        start = end
    return out


def summarize(records: Sequence[dict]) -> dict:
    """Mean/min/max visual tokens per sample and how often each granularity was used, over records that have them."""
    counted = [r for r in records if "visual_tokens" in r]
    if not counted:
        return {}
    tokens = [r["visual_tokens"] for r in counted]
    usage = {}
    for r in counted:
        for g in r.get("granularity", []):
            usage[str(g)] = usage.get(str(g), 0) + 1
    return dict(samples=len(tokens), mean=sum(tokens) / len(tokens), min=min(tokens), max=max(tokens),
                granularity_usage=dict(sorted(usage.items(), key=lambda kv: -int(kv[0]))))


__all__ = ["grid_tokens", "summarize", "visual_token_counts"]
