"""Tagger + detector: boxes for images, in the released box-file format.

For one image (the chat tool)::

    generator = MODELS.build(dict(type='BoxGenerator', tagger=dict(type='CLIPTagger', model=clip_path),
                                  detector=dict(type='OWLv2Detector', model=owlv2_path, device='cuda')))
    boxes = generator(pil_image)  # {'boxes': [[x1, y1, x2, y2], ...], 'scores': [...], 'labels': [...]}
"""
from typing import List, Sequence, Union

import torch
from PIL import Image

from mg_llava.registry import MODELS, build

from .images import to_uint8_tensor


@MODELS.register_module()
class BoxGenerator:
    """Names what is in each image with ``tagger``, then finds those names with ``detector``.

    Args:
        tagger: a :class:`~mg_llava.boxgen.taggers.Tagger` or its config.
        detector: an :class:`~mg_llava.boxgen.owlv2.OWLv2Detector` or its config.
        precompute_tag_embeddings: encode the tagger's whole vocabulary in the detector up front (fixed order, so
            results do not depend on which images came first); turn off for a quick single-image start.
    """

    def __init__(self, tagger, detector, precompute_tag_embeddings: bool = True):
        self.tagger = build(tagger)
        self.detector = build(detector)
        if precompute_tag_embeddings and self.tagger.vocabulary:
            self.detector.encode_tags(self.tagger.vocabulary)

    def describe(self) -> dict:
        return dict(tagger=self.tagger.describe(), detector=self.detector.describe())

    def generate(self, images: Sequence[torch.Tensor]) -> List[dict]:
        """B uint8 images (3, H_i, W_i) -> B dicts: ``boxes`` (int x1, y1, x2, y2 in original pixels), ``scores``,
        ``labels`` (one tag per box), ``tags`` (what the tagger named) and ``num_degenerate`` (see the detector)."""
        tags = self.tagger.tag(images)
        if len(tags) != len(images):
            raise ValueError(f"tagger returned {len(tags)} tag lists for {len(images)} images")
        results = self.detector.detect(images, tags)
        for result, image_tags in zip(results, tags):
            result["tags"] = list(image_tags)
        return results

    def __call__(self, image: Union[Image.Image, torch.Tensor]) -> dict:
        """Boxes for one image (PIL in any mode, or uint8 (3, H, W)): ``{boxes, scores, labels}``."""
        tensor = to_uint8_tensor(image) if isinstance(image, Image.Image) else image
        result = self.generate([tensor])[0]
        return {k: result[k] for k in ("boxes", "scores", "labels")}

    def to(self, device: Union[str, torch.device]) -> "BoxGenerator":
        self.tagger.to(device)
        self.detector.to(device)
        return self
