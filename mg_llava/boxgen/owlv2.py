"""OWLv2 open-vocabulary detector (transformers), batched, with a cache of tag embeddings.

Shape shorthand: B = images in a batch, P = patches (h * w, 72 * 72 for OWLv2-L/14 at 1008), Q = tags of the image
with the most tags in the batch, D = vision width, E = text embedding width.

Each image is scored only against its own tags (padding queries are masked out, not filled with blank prompts), so
an image's boxes do not depend on what else is in the batch. Each tag's text embedding is computed once per run and
cached; taggers with a fixed vocabulary have it encoded up front in a fixed order, so results do not depend on the
order images arrive in (which keeps resumed runs identical to uninterrupted ones).
"""
from typing import List, Optional, Sequence, Union

import torch

from mg_llava.dataset.box_rules import class_aware_nms
from mg_llava.registry import MODELS

from .geometry import owlv2_boxes_to_original, owlv2_pixel_values, released_int_boxes, round_boxes
from .hf_models import model_and_processor

DEFAULT_OWLV2 = "google/owlv2-large-patch14-ensemble"
PREPROCESS_MODES = ("transformers", "torch")
BOX_FORMATS = ("clean", "released")


def _dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


@MODELS.register_module()
class OWLv2Detector:
    """Find given tags in images with OWLv2; boxes come back in original-image pixels.

    Args:
        model: a hub id or local folder (loaded with ``Owlv2ForObjectDetection.from_pretrained``), or a built
            ``Owlv2ForObjectDetection`` (then pass ``processor``).
        processor: an ``Owlv2Processor`` or its folder; defaults to ``model``'s folder.
        score_threshold: keep a box when the sigmoid of its best tag's logit is above this (the released 0.2).
        prompt: text query per tag; ``{tag}`` is replaced by the tag.
        nms_iou_threshold: if set, class-aware NMS (mmcv ``batched_nms``) at this IoU per image.
        preprocess: ``'transformers'`` (default: the ``Owlv2ImageProcessor`` itself, as the released generation
            used it; scipy on the CPU, ~0.2 s per image) or ``'torch'`` (pad + anti-aliased bilinear resize in torch,
            on the device: fast, approximate; README gives the box difference measured between the two).
        box_format: ``'clean'`` (boxes clipped to the image and rounded, zero-area boxes dropped, highest score
            first) or ``'released'`` (as the released generation wrote them: not clipped, truncated toward zero,
            zero-area boxes kept, in OWLv2's patch order; no NMS).
        device, dtype: where and in what precision the backbone runs. The box and class heads stay in float32 so
            coordinates keep full precision under bf16/fp16.
        text_batch_size: tags encoded per text-tower call.
    """

    def __init__(self, model: Union[str, torch.nn.Module] = DEFAULT_OWLV2, processor=None,
                 score_threshold: float = 0.2, prompt: str = "a photo of {tag}",
                 nms_iou_threshold: Optional[float] = None, preprocess: str = "transformers",
                 box_format: str = "clean",
                 device: Union[str, torch.device] = "cpu", dtype: Union[str, torch.dtype] = "float32",
                 text_batch_size: int = 256):
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        if box_format == "released" and nms_iou_threshold is not None:
            raise ValueError("box_format='released' writes boxes as the released generation did, which ran no NMS; "
                             f"drop nms_iou_threshold={nms_iou_threshold} (the released rule applies NMS at load time)")
        if "{tag}" not in prompt:
            raise ValueError(f"prompt must contain '{{tag}}', got {prompt!r}")
        model, processor = model_and_processor(model, processor, Owlv2ForObjectDetection, Owlv2Processor, "OWLv2")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model = model.eval()
        self.device = torch.device(device)
        self.dtype = _dtype(dtype)
        self.model.to(device=self.device, dtype=self.dtype)
        for head in (self.model.box_head, self.model.class_head):
            head.float()

        size = processor.image_processor.size
        self.input_size = int(size["height"])
        expected = model.config.vision_config.image_size
        if size["height"] != size["width"] or self.input_size != expected:
            raise ValueError(f"processor resizes to {size['height']}x{size['width']} but the model takes "
                             f"{expected}x{expected}")
        self.mean = list(processor.image_processor.image_mean)
        self.std = list(processor.image_processor.image_std)
        self.max_text_length = min(self.tokenizer.model_max_length, model.config.text_config.max_position_embeddings)

        self.score_threshold = float(score_threshold)
        self.prompt = prompt
        self.nms_iou_threshold = nms_iou_threshold
        self.preprocess = preprocess
        self.box_format = box_format
        self.text_batch_size = text_batch_size
        self._text_embeds = {}  # tag -> (E,) float32 on device

    def describe(self) -> dict:
        """JSON-able settings that change the boxes (recorded with a run; a resume must match them)."""
        return dict(type=type(self).__name__, model=self.model.config._name_or_path,
                    score_threshold=self.score_threshold, prompt=self.prompt,
                    nms_iou_threshold=self.nms_iou_threshold, preprocess=self.preprocess, box_format=self.box_format,
                    dtype=str(self.dtype))

    # ----------------------------------------------------------------------------------------------------- text
    @torch.no_grad()
    def encode_tags(self, tags: Sequence[str]) -> None:
        """Compute and cache the text embeddings of the tags not cached yet, in the given order."""
        missing = [t for t in dict.fromkeys(tags) if t not in self._text_embeds]
        for start in range(0, len(missing), self.text_batch_size):
            chunk = missing[start:start + self.text_batch_size]
            tokens = self.tokenizer([self.prompt.format(tag=t) for t in chunk], padding="max_length",
                                    truncation=True, max_length=self.max_text_length, return_tensors="pt")
            embeds = self.model.owlv2.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                        attention_mask=tokens["attention_mask"].to(self.device))
            embeds = embeds.float()
            embeds = embeds / torch.linalg.norm(embeds, ord=2, dim=-1, keepdim=True)  # as Owlv2Model does
            self._text_embeds.update(zip(chunk, embeds))

    # ---------------------------------------------------------------------------------------------------- image
    def pixel_values(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> (3, S, S) normalised input on the device (see :mod:`.geometry`)."""
        if self.preprocess == "transformers":
            array = image.permute(1, 2, 0).cpu().numpy()
            values = self.processor.image_processor(images=[array], return_tensors="pt")["pixel_values"][0]
            return values.to(self.device)
        return owlv2_pixel_values(image.to(self.device), self.input_size, self.mean, self.std)

    @torch.no_grad()
    def detect(self, images: Sequence[torch.Tensor], tags: Sequence[Sequence[str]]) -> List[dict]:
        """Detect each image's tags.

        Args:
            images: B uint8 tensors (3, H_i, W_i), original pixels.
            tags: B lists of tags; an image with no tags gets no boxes (and costs nothing).

        Returns:
            B dicts ``{boxes: [[x1, y1, x2, y2] int, original pixels], scores: [float], labels: [tag],
            num_degenerate: int}``, highest score first; ``num_degenerate`` counts boxes dropped because they had no
            area left inside the image. With ``box_format='released'``: unclipped, truncated, in patch order, full
            float32 scores, nothing dropped.
        """
        if len(images) != len(tags):
            raise ValueError(f"got {len(images)} images but {len(tags)} tag lists")
        results = [dict(boxes=[], scores=[], labels=[], num_degenerate=0) for _ in images]
        tags = [list(dict.fromkeys(t)) for t in tags]
        todo = [i for i, t in enumerate(tags) if t]
        if not todo:
            return results
        self.encode_tags([t for i in todo for t in tags[i]])

        pixels = torch.stack([self.pixel_values(images[i]) for i in todo]).to(self.dtype)  # (B, 3, S, S)
        feature_map, _ = self.model.image_embedder(pixel_values=pixels)  # (B, h, w, D)
        batch, h, w, dim = feature_map.shape
        feats = feature_map.reshape(batch, h * w, dim).float()  # (B, P, D)
        pred_boxes = self.model.box_predictor(feats, feature_map.float())  # (B, P, 4) cxcywh, padded square

        num_queries = max(len(tags[i]) for i in todo)
        embed_dim = next(iter(self._text_embeds.values())).shape[-1]
        queries = feats.new_zeros(batch, num_queries, embed_dim)  # (B, Q, E)
        query_mask = torch.zeros(batch, num_queries, dtype=torch.bool, device=feats.device)  # (B, Q)
        for row, i in enumerate(todo):
            queries[row, :len(tags[i])] = torch.stack([self._text_embeds[t] for t in tags[i]])
            query_mask[row, :len(tags[i])] = True
        logits, _ = self.model.class_predictor(feats, queries, query_mask)  # (B, P, Q)
        best_logit, best_tag = logits.max(dim=-1)  # (B, P)
        scores = torch.sigmoid(best_logit)

        for row, i in enumerate(todo):
            keep = scores[row] > self.score_threshold
            _, height, width = images[i].shape
            box_scores, box_tags = scores[row][keep], best_tag[row][keep]
            if self.box_format == "released":
                boxes = owlv2_boxes_to_original(pred_boxes[row][keep], height, width, clip=False)
                results[i] = dict(boxes=released_int_boxes(boxes.cpu()), scores=box_scores.tolist(),
                                  labels=[tags[i][k] for k in box_tags.tolist()], num_degenerate=0)
                continue
            boxes = owlv2_boxes_to_original(pred_boxes[row][keep], height, width)  # (N, 4) original pixels
            if self.nms_iou_threshold is not None:
                order = class_aware_nms(boxes, box_scores, box_tags, self.nms_iou_threshold)
            else:
                order = torch.sort(box_scores, descending=True, stable=True).indices
            boxes, box_scores, box_tags = boxes[order], box_scores[order], box_tags[order]
            int_boxes, valid = round_boxes(boxes.cpu())
            valid = valid.to(box_scores.device)
            results[i] = dict(
                boxes=int_boxes,
                scores=[round(s, 4) for s in box_scores[valid].tolist()],
                labels=[tags[i][k] for k in box_tags[valid].tolist()],
                num_degenerate=int((~valid).sum()),
            )
        return results

    def to(self, device: Union[str, torch.device]) -> "OWLv2Detector":
        self.device = torch.device(device)
        self.model.to(self.device)
        self._text_embeds = {t: e.to(self.device) for t, e in self._text_embeds.items()}
        return self
