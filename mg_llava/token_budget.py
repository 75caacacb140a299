"""The sequence budget of a config: the longest LLM input one sample can make, against the LLM's positions.

One sample's LLM sequence is its text (at most ``max_length`` tokens, each ``<image>``/``<video>`` placeholder
among them) with every placeholder replaced by visual tokens (SPEC 1.7, 1.8):

    image         T + N                       T = (low_res / patch)^2 (576 real), N <= max_boxes (100)
    video         F x (T + N)                 F = num_frames (8), boxes per frame
    tiled image   T + R*t x (C*t + 1) + N     the largest canvas of the pinpoints, R x C crops of t x t tokens
                                              (unpadding only removes rows/columns), one row-end token per row

so the longest admissible sample is ``max_length - 1 + max(visual)``. It must fit the LLM's trained positions,
``max_position_embeddings`` x the config's linear RoPE factor (``model.llm.rope_scaling``), or the tokens past
them get positions the LLM never saw. :func:`config_budget` computes this from a config (no model is built);
:func:`sequence_length` counts a loaded sample (the dataset's refusal uses it).
"""
import json
import math
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

from .dataset.sample import sequence_length



def llm_positions() -> dict:
    """{hub id: the positions the published LLM was trained with (its config.json's max_position_embeddings)}.
    Imported late: the dataset imports this module, and the model package imports the dataset's."""
    from .model.reference_configs import LLMS

    return {hub: kwargs["max_position_embeddings"] for _, kwargs, hub in LLMS.values()}


@dataclass
class TokenBudget:
    """The budget of one config (all counts in LLM tokens)."""

    text: int  # max_length: text tokens kept per sample, the placeholder included
    image_tokens: int  # T: fused low-res tokens of one image (frame)
    max_boxes: int  # N: object tokens per image (frame) at most; 0 without the object branch
    num_frames: int  # F: frames of a video sample; 0 when the config has no video source
    tiled_tokens: int  # the largest crop grid with row ends of a tiled image; 0 without any-res tiling
    positions: int  # the LLM's trained positions x the config's RoPE factor
    rope_factor: float

    @property
    def image_sample(self) -> int:
        return self.text - 1 + self.image_tokens + self.tiled_tokens + self.max_boxes

    @property
    def video_sample(self) -> int:
        return self.text - 1 + self.num_frames * (self.image_tokens + self.max_boxes) if self.num_frames else 0

    @property
    def longest(self) -> int:
        return max(self.image_sample, self.video_sample, self.text)

    @property
    def fits(self) -> bool:
        return self.longest <= self.positions

    def boxes_per_frame_that_fit(self) -> int:
        """The largest per-frame box cap with which a full-length video sample fits (negative: none does)."""
        return (self.positions - self.text + 1) // max(self.num_frames, 1) - self.image_tokens

    def as_dict(self) -> dict:
        return dict(asdict(self), image_sample=self.image_sample, video_sample=self.video_sample,
                    longest=self.longest, fits=self.fits)


def _local_config(folder: str) -> Optional[dict]:
    path = osp.join(folder, "config.json")
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def llm_trained_positions(llm_path: str) -> int:
    """The positions the LLM ``llm_path`` was trained with: a published LLM's (:func:`llm_positions`) or a local
    folder's ``config.json`` ``max_position_embeddings``; ``ValueError`` naming the LLM when neither is known."""
    published = llm_positions()
    if llm_path in published:
        return published[llm_path]
    llm = _local_config(llm_path) if osp.isdir(llm_path) else None
    if llm is None:
        raise ValueError(f"LLM {llm_path!r}: neither a local folder with a config.json nor a published LLM "
                         f"({sorted(published)})")
    positions = llm.get("max_position_embeddings")
    if not positions:
        raise ValueError(f"no max_position_embeddings known for the LLM {llm_path!r}")
    return positions


def _clip_patch(cfg) -> int:
    """The patch size of the low-res encoder, from its hub id or local folder."""
    from .model.reference_configs import CLIP_VIT_L_336

    clip_path = cfg.model.visual_encoder.get("pretrained_model_name_or_path", "")
    clip = _local_config(clip_path) if osp.isdir(clip_path) else None
    if clip is not None:
        return clip.get("vision_config", clip).get("patch_size")
    if clip_path.startswith("openai/clip-vit-large-patch14"):
        return CLIP_VIT_L_336["patch_size"]
    raise ValueError(f"low-res encoder {clip_path!r}: neither a local folder with a config.json nor CLIP ViT-L/14 "
                     f"(the tiny configs need their assets: python tools/build_tiny_assets.py)")


def linear_rope_factor(llm: Mapping) -> float:
    """The linear RoPE factor of an LLM's config dict (``rope_scaling``), 1 without one."""
    scaling = llm.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if scaling and kind != "linear":
        raise ValueError(f"model.llm.rope_scaling {dict(scaling)}: only linear scaling is budgeted here")
    return float(scaling.get("factor", 1.0))


def rope_factor(cfg) -> float:
    """The linear RoPE factor a config gives its LLM (``model.llm.rope_scaling``), 1 without one."""
    return linear_rope_factor(cfg.model.llm)


def llm_context(llm: Mapping) -> int:
    """The positions an LLM's config dict (``model.llm``: its ``pretrained_model_name_or_path`` and ``rope_scaling``)
    may use: its trained positions x its linear RoPE factor. The budget's ``positions`` and the dataset's
    ``max_positions`` (derived by :mod:`mg_llava.config_settings`)."""
    return int(llm_trained_positions(llm["pretrained_model_name_or_path"]) * linear_rope_factor(llm))


def _sources(cfg) -> Sequence[dict]:
    dataset = cfg.train_dataloader.dataset
    return [dict(dataset, **source) for source in (dataset.get("datasets") or [dataset])]


def config_budget(cfg) -> TokenBudget:
    """The :class:`TokenBudget` of a loaded mmengine config (``Config.fromfile``)."""
    patch = _clip_patch(cfg)
    sources = _sources(cfg)
    side = cfg.low_res // patch
    has_boxes = cfg.model.get("object_features") is not None
    max_boxes = max(int(s.get("max_boxes", cfg.get("max_boxes", 100))) for s in sources) if has_boxes else 0
    video = [s for s in sources if s.get("video_folder")]
    num_frames = max(int(s.get("num_frames", 8)) for s in video) if video else 0
    text = max(int(s.get("max_length", cfg.max_length)) for s in sources)
    tiled = 0
    views = cfg.get("image_views") or {}
    if "grid_pinpoints" in views:
        newline = bool(cfg.model.get("anyres", {}).get("image_newline", True))
        for width, height in views["grid_pinpoints"]:
            rows, cols = math.ceil(height / cfg.low_res), math.ceil(width / cfg.low_res)
            tiled = max(tiled, rows * side * (cols * side + int(newline)))
    return TokenBudget(text=text, image_tokens=side * side, max_boxes=max_boxes, num_frames=num_frames,
                       tiled_tokens=tiled, positions=llm_context(cfg.model.llm), rope_factor=rope_factor(cfg))
