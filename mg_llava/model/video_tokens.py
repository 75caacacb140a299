"""Video in the model (SPEC 1.8): frames are encoded like images, in bounded chunks, then joined per ``<video>``.

Shape shorthand: I = images in the batch, each video counting its T frames; V = videos; P = placeholders (images +
videos); T_i = tokens of image/frame i (fused tokens + its box tokens); H = LLM width.

At a ``<video>`` placeholder (-201) the sequence is ``[frame 0 tokens][frame 1 tokens]...[frame T-1 tokens]``, each
``[fused tokens of frame t][box tokens of frame t]``: the frames' image token blocks one after the other. A one-frame
video therefore gets exactly the tokens of the same picture given as an image.

Video in the model is this module and the token assembler (``token_assembler.py``): the frames are encoded like
images (:func:`run_in_chunks` bounds the encoders' memory), :func:`frames_per_placeholder` says which frames belong
to which placeholder, and the assembler joins and places them.
"""
from typing import List, Optional

import torch
from xtuner.utils import IMAGE_TOKEN_INDEX

from mg_llava.dataset.video import VIDEO_TOKEN_INDEX

PLACEHOLDERS = (IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX)


def is_placeholder(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the ``<image>`` and ``<video>`` positions."""
    return (input_ids == IMAGE_TOKEN_INDEX) | (input_ids == VIDEO_TOKEN_INDEX)


def run_in_chunks(encoder: torch.nn.Module, pixels: torch.Tensor, chunk_size: Optional[int]):
    """``encoder(pixels)`` for (I, 3, S, S) pixels, at most ``chunk_size`` images per call (None: one call).

    The encoders are frozen and run without autograd, so their activations are freed after each chunk: the peak
    is that of ``chunk_size`` images (8 video frames at 768 px need 8 ConvNeXt-L passes at once otherwise).
    Tensor outputs are concatenated along dim 0; list/tuple outputs (the ConvNeXt stage maps) stage by stage.
    """
    if chunk_size is None or len(pixels) <= chunk_size:
        return encoder(pixels)
    if chunk_size < 1:
        raise ValueError(f"encoder chunk size must be >= 1, got {chunk_size}")
    outputs = [encoder(chunk) for chunk in pixels.split(chunk_size)]
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return type(outputs[0])(torch.cat(stage) for stage in zip(*outputs))


def frames_per_placeholder(input_ids: torch.Tensor, attention_mask: torch.Tensor, num_frames: int,
                           frames_per_video: Optional[torch.Tensor]) -> Optional[List[int]]:
    """How many consecutive encoded images/frames each placeholder takes, in the batch's row-major order.

    Args:
        input_ids: (B, L) with -200 at images and -201 at videos.
        attention_mask: (B, L), True on real tokens (padding is never a placeholder).
        num_frames: I, the encoded images/frames of the batch (a video's frames consecutive, in time order).
        frames_per_video: (V,) frames of each video in batch order, or None when the batch has no video.

    Returns P counts (1 for an image, the video's frame count for a video), or None when the batch has no video
    (each placeholder then takes one image; the placement checks their number). The token assembler
    (``token_assembler.group_frames``) joins the frames.
    """
    kinds = input_ids[attention_mask.bool() & is_placeholder(input_ids)].tolist()  # row-major, as placed
    counts = list(frames_per_video.tolist()) if frames_per_video is not None else []
    num_videos = sum(kind == VIDEO_TOKEN_INDEX for kind in kinds)
    if num_videos != len(counts):
        raise ValueError(f"the batch has {num_videos} video placeholders (token id {VIDEO_TOKEN_INDEX}) but "
                         f"frames_per_video lists {len(counts)} videos")
    if not counts:
        return None
    needed = len(kinds) - num_videos + sum(counts)
    if needed != num_frames:
        raise ValueError(f"the batch's {len(kinds) - num_videos} images and videos of {counts} frames need "
                         f"{needed} encoded images/frames, got {num_frames}")
    takes, videos = [], iter(counts)
    for kind in kinds:
        take = next(videos) if kind == VIDEO_TOKEN_INDEX else 1
        if take < 1:
            raise ValueError(f"a video needs at least one frame, frames_per_video={counts}")
        takes.append(take)
    return takes
