"""A CLIP model scoring a tag vocabulary (zero-shot), for users without RAM++.

Shape shorthand: B = images, V = vocabulary size, E = CLIP embedding width, S = CLIP input size.
"""
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F

from mg_llava.registry import MODELS

from ..hf_models import model_and_processor
from ..vocab import load_vocabulary, vocabulary_fingerprint
from .base import Tagger

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def clip_pixel_values(image: torch.Tensor, size: int, crop: int, mean, std) -> torch.Tensor:
    """uint8 (3, H, W) -> (3, crop, crop): shortest edge to ``size`` (bicubic), centre crop, normalise.

    Follows ``CLIPImageProcessor`` (the long edge is ``int(size * long / short)``), in torch so it runs on the
    device; the PIL resampling it replaces differs by a few grey levels.
    """
    _, height, width = image.shape
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if height <= width else (new_long, size)
    x = F.interpolate(image[None].float() / 255.0, size=(new_h, new_w), mode="bicubic", align_corners=False,
                      antialias=True)[0].clamp(0, 1)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    x = x[:, max(top, 0):max(top, 0) + crop, max(left, 0):max(left, 0) + crop]
    if x.shape[-2:] != (crop, crop):  # image smaller than the crop: pad like the processor (zeros)
        x = F.pad(x, (0, crop - x.shape[-1], 0, crop - x.shape[-2]))
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean_t) / std_t


@MODELS.register_module()
class CLIPTagger(Tagger):
    """Tag an image with the vocabulary entries CLIP finds most likely.

    Softmax over the vocabulary of ``logit_scale * cos(image, "a photo of a {tag}.")``; keep at most ``top_k`` tags
    whose probability is at least ``min_prob``, most likely first.

    Args:
        model: a hub id or local folder of a full ``CLIPModel`` (text and vision towers) with its processor.
        vocabulary: a shipped name (``'lvis'``, ``'coco80'``), a file with one tag per line, or a list.
    """

    def __init__(self, model: str = DEFAULT_CLIP, vocabulary: Union[str, Sequence[str]] = "lvis",
                 prompt: str = "a photo of a {tag}.", top_k: int = 10, min_prob: float = 0.01,
                 device: Union[str, torch.device] = "cpu", dtype: Union[str, torch.dtype] = "float32",
                 text_batch_size: int = 256, processor=None):
        from transformers import CLIPModel, CLIPProcessor

        if "{tag}" not in prompt:
            raise ValueError(f"prompt must contain '{{tag}}', got {prompt!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.vocabulary = load_vocabulary(vocabulary)
        model, processor = model_and_processor(model, processor, CLIPModel, CLIPProcessor, "CLIP")
        self.tokenizer = processor.tokenizer
        image_processor = processor.image_processor
        self.resize = int(image_processor.size["shortest_edge"])
        self.crop = int(image_processor.crop_size["height"])
        self.mean, self.std = list(image_processor.image_mean), list(image_processor.image_std)
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.prompt, self.top_k, self.min_prob = prompt, top_k, float(min_prob)
        self.text_batch_size = text_batch_size
        self._vocab_embeds = None  # (V, E) float32, unit norm

    def describe(self):
        return dict(type=type(self).__name__, model=self.model.config._name_or_path, prompt=self.prompt,
                    top_k=self.top_k, min_prob=self.min_prob, vocabulary_size=len(self.vocabulary),
                    vocabulary_sha1=vocabulary_fingerprint(self.vocabulary), dtype=str(self.dtype))

    @torch.no_grad()
    def vocabulary_embeddings(self) -> torch.Tensor:
        """(V, E) unit-norm text embeddings of the prompted vocabulary (computed once)."""
        if self._vocab_embeds is None:
            chunks = []
            for start in range(0, len(self.vocabulary), self.text_batch_size):
                prompts = [self.prompt.format(tag=t) for t in self.vocabulary[start:start + self.text_batch_size]]
                tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
                chunks.append(self.model.get_text_features(**tokens).float())
            self._vocab_embeds = F.normalize(torch.cat(chunks), dim=-1)
        return self._vocab_embeds

    @torch.no_grad()
    def tag(self, images) -> List[List[str]]:
        if len(images) == 0:
            return []
        pixels = torch.stack([
            clip_pixel_values(img.to(self.device), self.resize, self.crop, self.mean, self.std) for img in images
        ]).to(self.dtype)  # (B, 3, S, S)
        image_embeds = F.normalize(self.model.get_image_features(pixel_values=pixels).float(), dim=-1)  # (B, E)
        logits = self.model.logit_scale.exp().float() * image_embeds @ self.vocabulary_embeddings().T  # (B, V)
        probs, order = logits.softmax(dim=-1).topk(min(self.top_k, len(self.vocabulary)), dim=-1)  # (B, k)
        return [[self.vocabulary[j] for p, j in zip(row_p, row_j) if p >= self.min_prob]
                for row_p, row_j in zip(probs.tolist(), order.tolist())]

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(self.device)
        if self._vocab_embeds is not None:
            self._vocab_embeds = self._vocab_embeds.to(self.device)
        return self
