"""One conversation -> one sample in the training dataset's format, through the training code itself.

Text: LLaVA turns -> XTuner's ``llava_map_fn`` -> ``template_map_fn`` -> ``encode_fn`` (what ``LLaVABoxDataset``
runs), stopping where the answer to the last question would start; a video's ``<video>`` is encoded as the dataset
does (as an ``<image>``, then marked -201). Video: :func:`read_video` frames, each through :class:`ImageViews`.
Image: :class:`ImageViews` (both views and the box geometry; ``ImageViews.load`` for files, as the dataset decodes
them). Boxes: the model's box rule (:func:`~mg_llava.dataset.apply_box_rule`: clean, or released for the released
checkpoints) on a box-file entry or on boxes found on the fly by :class:`~mg_llava.boxgen.BoxGenerator`. The
sample is assembled as ``LLaVABoxDataset.__getitem__`` assembles its own (:mod:`mg_llava.dataset.sample`), so
``llava_box_collate_fn`` batches it. The settings come from the training config (:meth:`Preprocessor.from_config`).

Shape shorthand: L prompt tokens, S_low / S_high the two view sides, N boxes.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn
from xtuner.dataset.utils import encode_fn, get_bos_eos_token_ids
from xtuner.utils import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX

from mg_llava.dataset import (DEFAULT_VIDEO_TOKEN, MAX_BOXES, NMS_IOU_THRESHOLD, NUM_FRAMES, DataSettings, ImageViews,
                              VideoReadError, Views, apply_box_rule, read_video)
from mg_llava.dataset.sample import assemble_sample, mark_video_token, video_as_image
from mg_llava.image_io import ImageDecodeError, open_image, to_rgb
from mg_llava.registry import build

ImageSource = Union[str, bytes, Image.Image]
NO_LENGTH_LIMIT = 1 << 30


# An image that cannot be read; the message names the sample and the file (the shared decoder's error).
ImageLoadError = ImageDecodeError


class MissingBoxesError(KeyError):
    """The box file has no entry for an image's id."""

    def __str__(self):
        return self.args[0]


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the model: both views and its boxes."""

    views: Views  # pixel_values (3, S_low, S_low), pixel_values_aux (3, S_high, S_high), geometry
    boxes: torch.Tensor  # (N, 4) xyxy in high-res input pixels
    num_raw_boxes: int  # boxes before the load-time rules (NMS, limit, clipping)


@dataclass(frozen=True)
class PreparedVideo:
    """A video ready for the model: T frames, each with both views and its own boxes."""

    frames: List[Views]  # T views, in time order
    boxes: List[torch.Tensor]  # T (N_t, 4), xyxy in high-res input pixels
    indices: List[int]  # the frame indices chosen (read_video)
    num_raw_boxes: int  # boxes of all frames before the load-time rules

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for b in self.boxes)


def decode_image(source: ImageSource, min_side: Optional[int] = None, where: str = "") -> Tuple[Image.Image, tuple]:
    """``(RGB image, original (W, H))`` from a path, encoded bytes or a PIL image, through the shared decoder
    (:func:`~mg_llava.image_io.open_image`: the dataset's modes, orientation and reduced-scale JPEG decoding when
    ``min_side`` is given). Raises :class:`ImageLoadError` naming ``where`` and the file."""
    if isinstance(source, Image.Image):
        return to_rgb(source), source.size
    decoded = open_image(source, where=where or "image", min_side=min_side)
    return decoded.image, decoded.size


class Preprocessor:
    """Turns questions (with history) and images into samples of ``LLaVABoxDataset``'s format.

    Args:
        tokenizer: the LLM's tokenizer.
        template: a prompt template (``PROMPT_TEMPLATE.vicuna`` etc.), as in the training config.
        image_views: the training config's :class:`ImageViews`.
        max_boxes, iou_threshold: the load-time box rules of the training config.
        system: an optional system prompt (the training data had none).
        num_frames: T, frames sampled per video (the training dataset's ``num_frames``).
        box_rule: ``'clean'`` or ``'released'`` (:func:`~mg_llava.dataset.apply_box_rule`): the rule the model was
            trained with. Under ``'released'`` an image without boxes gets the released dummy box.
    """

    def __init__(self, tokenizer, template, image_views: ImageViews, max_boxes: int = MAX_BOXES,
                 iou_threshold: float = NMS_IOU_THRESHOLD, system: Optional[str] = None,
                 num_frames: int = NUM_FRAMES, box_rule: str = "clean"):
        self.num_frames = num_frames
        self.tokenizer = tokenizer
        self.template = template
        self.image_views = image_views
        self.max_boxes = max_boxes
        self.iou_threshold = iou_threshold
        self.system = system
        self.box_rule = box_rule

    @classmethod
    def from_settings(cls, settings: DataSettings, system: Optional[str] = None) -> "Preprocessor":
        """The preprocessor of a config's :class:`~mg_llava.dataset.DataSettings` (tokenizer and views built from
        their config dicts)."""
        return cls(build(settings.tokenizer), settings.prompt_template, build(settings.image_views),
                   max_boxes=settings.max_boxes, iou_threshold=settings.iou_threshold, system=system,
                   num_frames=settings.num_frames, box_rule=settings.box_rule)

    @classmethod
    def from_config(cls, cfg, system: Optional[str] = None, **overrides) -> "Preprocessor":
        """The preprocessor of a training config: its training data's tokenizer, template, views, box rules and
        frame count (:meth:`DataSettings.from_config`); ``overrides`` replace settings (None keeps the config's)."""
        return cls.from_settings(DataSettings.from_config(cfg).replace(**overrides), system=system)

    # ------------------------------------------------------------------------------------------------- text
    def encode_prompt(self, question: str, history: Sequence[Tuple[str, str]] = (), has_image: bool = False,
                      has_video: bool = False) -> List[int]:
        """Token ids of the conversation so far, ending where the model's answer to ``question`` starts.

        ``history`` is the earlier (question, answer) turns. With ``has_image`` the first question gets the
        ``<image>`` token (LLaVA's ``<image>\\n`` prefix) unless it already has one; its id is -200. With
        ``has_video`` the same for ``<video>`` (id -201).
        """
        questions = [q for q, _ in history] + [question]
        if has_video:
            if has_image:
                raise ValueError("a conversation has one image or one video, not both")
            if not any(DEFAULT_VIDEO_TOKEN in q for q in questions):
                questions[0] = DEFAULT_VIDEO_TOKEN + "\n" + questions[0]
            count = sum(q.count(DEFAULT_VIDEO_TOKEN) for q in questions)
            if count != 1 or any(DEFAULT_IMAGE_TOKEN in q for q in questions):
                raise ValueError(f"a video conversation needs one {DEFAULT_VIDEO_TOKEN} and no {DEFAULT_IMAGE_TOKEN}, "
                                 f"found {count}")
            # encoded as the training dataset does: through XTuner as an <image>, then marked as the video
            questions = [video_as_image(q) for q in questions]
            ids = self.encode_prompt(questions[-1], list(zip(questions[:-1], [a for _, a in history])),
                                     has_image=True)
            return mark_video_token(ids)
        if has_image and not any(DEFAULT_IMAGE_TOKEN in q for q in questions):
            questions[0] = DEFAULT_IMAGE_TOKEN + "\n" + questions[0]
        count = sum(q.count(DEFAULT_IMAGE_TOKEN) for q in questions)
        if count != int(has_image):
            raise ValueError(f"the conversation has {count} {DEFAULT_IMAGE_TOKEN} tokens for "
                             f"{int(has_image)} image(s)")
        answers = [a for _, a in history] + [""]  # the last answer is what the model writes
        messages = []
        for q, a in zip(questions, answers):
            messages += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        conversation = llava_map_fn({"conversations": messages})["conversation"]
        if self.system:
            conversation[0]["system"] = self.system
        conversation = template_map_fn({"conversation": conversation}, self.template)["conversation"]

        # The dataset encodes all turns in one call; encoding the answered turns, then the last question alone,
        # gives the same ids up to the answer (encode_fn works turn by turn) minus one detail: the last question
        # starts with BOS only when the turn before it ended with EOS.
        earlier, last = conversation[:-1], conversation[-1]
        ids = []
        if earlier:
            ids = encode_fn({"conversation": earlier}, self.tokenizer, NO_LENGTH_LIMIT, input_ids_with_output=True,
                            with_image_token=True)["input_ids"]
        last_ids = encode_fn({"conversation": [last]}, self.tokenizer, NO_LENGTH_LIMIT,
                             input_ids_with_output=False, with_image_token=True)["input_ids"]
        if earlier and not earlier[-1]["need_eos_token"]:
            bos, _ = get_bos_eos_token_ids(self.tokenizer)
            last_ids = last_ids[len(bos):]
        return ids + last_ids

    @property
    def stop_words(self) -> List[str]:
        return list(self.template.get("STOP_WORDS", None) or [])

    # ------------------------------------------------------------------------------------------------- image
    def prepare_image(self, source: ImageSource, boxes=None, where: str = "") -> PreparedImage:
        """Both views of ``source`` and its boxes.

        ``boxes``: None (no detections: zero boxes, or the released rule's dummy box), a ``(BoxTable, id)`` pair, a box-file entry dict ``{boxes, scores,
        labels}`` in original-image pixels, or a :class:`~mg_llava.boxgen.BoxGenerator` (run on the full-resolution
        image).
        """
        image, size = decode_image(source, min_side=self.image_views.reduced_decode_side, where=where)
        views = self.image_views(image, original_size=size)
        if boxes is None:
            raw, scores, label_ids = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        elif isinstance(boxes, tuple):
            table, key = boxes
            row = table.row(key)
            if row < 0:
                raise MissingBoxesError(f"{where or 'image'}: no entry for id {key!r} in box file {table.path}")
            raw, scores, label_ids = table.arrays(row)
        else:
            if not isinstance(boxes, dict):  # a box generator: it needs the image at full resolution
                full = source if isinstance(source, Image.Image) else decode_image(source, where=where)[0]
                boxes = boxes(full)
            raw, scores, label_ids = entry_arrays(boxes, where)
        prepared = apply_box_rule(self.box_rule, raw, scores, label_ids, views.geometry, self.max_boxes,
                                  self.iou_threshold)
        return PreparedImage(views, prepared.boxes, len(scores))

    # ------------------------------------------------------------------------------------------------- video
    def prepare_video(self, source: str, boxes=None, where: str = "") -> PreparedVideo:
        """T frames of the video file or frames folder ``source`` (the dataset's choice), both views of each and
        its boxes.

        ``boxes``: None (zero boxes), a ``(BoxTable, key)`` pair naming a video entry (its id or video path), a
        video entry dict ``{"frames": [{boxes, scores, labels}, ...]}`` (one per chosen frame, frame pixels), or a
        :class:`~mg_llava.boxgen.BoxGenerator`, run on each chosen frame.
        """
        try:
            video = read_video(source, self.num_frames)
        except VideoReadError as err:
            raise ImageLoadError(f"{where or 'video'}: {err}") from err
        frames = [self.image_views(frame) for frame in video.frames]
        if boxes is None:
            return PreparedVideo(frames, [torch.zeros(0, 4) for _ in frames], video.indices, 0)
        if isinstance(boxes, tuple):
            table, key = boxes
            rows = table.frame_rows(key)
            if rows is None:
                raise MissingBoxesError(f"{where or 'video'}: no video entry {key!r} in box file {table.path}")
            per_frame = [table.arrays(row) for row in rows]
        elif isinstance(boxes, dict):
            per_frame = [entry_arrays(frame, f"{where or 'video'} frame {t}")
                         for t, frame in enumerate(boxes.get("frames") or [])]
        else:  # a box generator, on each chosen frame (as data_prep/generate_boxes.py does)
            per_frame = [entry_arrays(boxes(frame), f"{where or 'video'} frame {t}")
                         for t, frame in enumerate(video.frames)]
        if len(per_frame) != len(frames):
            raise ValueError(f"{where or 'video'}: boxes for {len(per_frame)} frames, but {len(frames)} frames are "
                             f"sampled (num_frames={self.num_frames})")
        prepared = [apply_box_rule(self.box_rule, raw, scores, label_ids, views.geometry, self.max_boxes,
                                   self.iou_threshold) for (raw, scores, label_ids), views in zip(per_frame, frames)]
        return PreparedVideo(frames, [p.boxes for p in prepared], video.indices,
                             sum(len(scores) for _, scores, _ in per_frame))

    # ------------------------------------------------------------------------------------------------- sample
    def sample(self, question: str, history: Sequence[Tuple[str, str]] = (), image: Optional[PreparedImage] = None,
               sample_id: str = "chat", video: Optional[PreparedVideo] = None) -> dict:
        """A sample as ``LLaVABoxDataset.__getitem__`` returns it (labels all -100: nothing is trained)."""
        input_ids = torch.tensor(self.encode_prompt(question, history, has_image=image is not None,
                                                    has_video=video is not None))
        text = (sample_id, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        views = self.image_views
        if video is not None:
            pixels = dict(pixel_values=torch.stack([frame.pixel_values for frame in video.frames]),
                          pixel_values_aux=torch.stack([frame.pixel_values_aux for frame in video.frames]))
            return assemble_sample(*text, pixels, list(video.boxes), frames_per_video=[len(video.frames)])
        if image is None:
            pixels = dict(pixel_values=torch.zeros(0, 3, views.low_res, views.low_res),
                          pixel_values_aux=torch.zeros(0, 3, views.high_res, views.high_res))
            return assemble_sample(*text, pixels, [])
        pixels = dict(pixel_values=image.views.pixel_values[None], pixel_values_aux=image.views.pixel_values_aux[None])
        tiles = None
        if getattr(image.views, "crops", None) is not None:  # any-resolution tiles, as the dataset hands them
            tiles = (image.views.crops, image.views.tile_row)
        return assemble_sample(*text, pixels, [image.boxes], tiles=tiles)


def entry_arrays(entry: dict, where: str = ""):
    """A released box-file entry ``{boxes, scores, labels}`` -> (boxes (N, 4), scores (N,), label ids (N,))."""
    try:
        raw = np.asarray(entry["boxes"], dtype=np.float64).reshape(-1, 4)  # the released rule adds the pad in float64
        scores = np.asarray(entry["scores"], dtype=np.float32).reshape(-1)
        labels = list(entry["labels"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where or 'image'}: bad box entry ({err!r}); expected boxes/scores/labels") from err
    if not len(raw) == len(scores) == len(labels):
        raise ValueError(f"{where or 'image'}: {len(raw)} boxes, {len(scores)} scores, {len(labels)} labels")
    names = {}
    label_ids = np.asarray([names.setdefault(label, len(names)) for label in labels], dtype=np.int64)
    return raw, scores, label_ids


__all__ = ["ImageLoadError", "MissingBoxesError", "PreparedImage", "PreparedVideo", "Preprocessor", "decode_image",
           "entry_arrays"]
