"""One sample of ``LLaVABoxDataset``'s format, assembled the same way for training (:class:`LLaVABoxDataset`) and
inference (:class:`mg_llava.inference.preprocess.Preprocessor`), so ``llava_box_collate_fn`` batches either.

A video's ``<video>`` goes through XTuner's text functions as an ``<image>`` (they know only that one) and its
placeholder id is then marked as the video's: :func:`video_as_image` before tokenising, :func:`mark_video_token` after.

Shape shorthand: L tokens, n images/frames, S_low / S_high the two view sides, N_i boxes of image/frame i.
"""
from typing import Optional, Sequence, Tuple

import torch
from xtuner.utils import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX

from .video import DEFAULT_VIDEO_TOKEN, VIDEO_TOKEN_INDEX


def video_as_image(text: str) -> str:
    """``text`` with the video placeholder written as the image one, for XTuner's map and encode functions."""
    return text.replace(DEFAULT_VIDEO_TOKEN, DEFAULT_IMAGE_TOKEN)


def mark_video_token(input_ids: Sequence[int]) -> list:
    """The token ids of a video sample encoded through :func:`video_as_image`: the image placeholder id (-200)
    becomes the video's (-201)."""
    return [VIDEO_TOKEN_INDEX if token == IMAGE_TOKEN_INDEX else token for token in input_ids]


def assemble_sample(sample_id: str, input_ids: torch.Tensor, labels: torch.Tensor, views: dict,
                    boxes: list, frames_per_video: Sequence[int] = (),
                    tiles: Optional[Tuple[torch.Tensor, tuple]] = None) -> dict:
    """A sample as ``LLaVABoxDataset.__getitem__`` returns it.

    Args:
        input_ids, labels: (L,) LongTensors.
        views: the view keys, one row per image/frame: ``pixel_values`` (n, 3, S_low, S_low) and/or
            ``pixel_values_aux`` (n, 3, S_high, S_high), or ``images`` (n decoded images, resized on the device).
        boxes: n (N_i, 4) tensors, xyxy in high-res input pixels.
        frames_per_video: [T] for a video sample (its n = T frames), [] otherwise.
        tiles: any-resolution crops ``(pixel_values_tiles (rows x cols, 3, S_low, S_low), (rows, cols, W, H))``.
    """
    sample = dict(id=sample_id, input_ids=input_ids, labels=labels, frames_per_video=list(frames_per_video))
    sample.update(views)
    sample["boxes"] = boxes
    if tiles is not None:
        sample["pixel_values_tiles"] = tiles[0]
        sample["image_tiles"] = [tiles[1]]
    return sample


def sequence_length(num_text_tokens: int, num_placeholders: int, images: int, image_tokens: int,
                    boxes: int) -> int:
    """LLM tokens of one loaded sample: its text with each of ``num_placeholders`` placeholders replaced by the
    visual tokens of its ``images`` images (frames) and ``boxes`` boxes in all (plain views; tiles are budgeted by
    :func:`mg_llava.token_budget.config_budget`)."""
    return num_text_tokens - num_placeholders + images * image_tokens + boxes


__all__ = ["assemble_sample", "mark_video_token", "sequence_length", "video_as_image"]
