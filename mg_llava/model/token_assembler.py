"""The token assembler: the one place that orders visual tokens (SPEC 1.7, 1.8).

Shape shorthand: B samples, L tokens, I images in the batch (a video counts its frames), P placeholders (images +
videos), T_i grid tokens of image i (576 real, 16 tiny; T_k after AVG-LLaVA's pooling; a Perceiver Resampler's
latents, at most the grid's count), C_i tokens of its crop grid (tiled images), N_i its box tokens, H the LLM width.

The producers hand over blocks, never sequences:

- ``MGLLaVAModel.encode_images``: :class:`ImageParts`, each image's (or frame's) grid tokens and box tokens;
- ``AnyResTokens`` (``anyres_tokens.py``): each tiled image's crop grid;
- AVG-LLaVA: each image's grid (and crop grid) at its chosen granularity;
- ``video_tokens.frames_per_placeholder``: how many consecutive images/frames each placeholder takes.

Here they are put in order, in one pass that only goes forward:

    image/frame i   [grid (T_i, H)][crop grid (C_i, H), tiled images only][box tokens (N_i, H)]
    <image>         its image's tokens
    <video>         its frames' tokens, one after the other in time order
    sample          its text with each placeholder replaced, right-padded to the longest sample

A block's own inner layout is its producer's: the grid is row-major (the projector's / the scaler's), the crop grid
is unpadded rows with row ends (``AnyResTokens.grid``).

Unlike XTuner's ``prepare_inputs_labels_for_multimodal``, a text-only sample consumes no image (no phantom row)
and every image may have its own number of tokens.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from xtuner.utils import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from .video_tokens import VIDEO_TOKEN_INDEX, frames_per_placeholder, is_placeholder


class ImageParts(NamedTuple):
    """What ``MGLLaVAModel.encode_images`` gives: the blocks of each image/frame, in batch order, not yet ordered."""

    grids: Union[torch.Tensor, Sequence[torch.Tensor]]  # (I, T, H): the projected (fused) grid of each image
    boxes: Optional[Sequence[torch.Tensor]]  # I x (N_i, H) box tokens; None for a model without object tokens


def count_mismatch_error(num_placeholders: int, num_images: int) -> ValueError:
    return ValueError(f"the batch has {num_placeholders} image placeholders (token id {IMAGE_TOKEN_INDEX}; a video's "
                      f"{VIDEO_TOKEN_INDEX} counts as one) but {num_images} images")


def image_sequences(grids: Sequence[torch.Tensor], crops: Optional[Sequence[torch.Tensor]] = None,
                    boxes: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
    """Each image's (or frame's) tokens ``[grid][crop grid][boxes]``.

    Args:
        grids: I tensors (T_i, H) (or one (I, T, H) tensor).
        crops: I tensors (C_i, H), the crop grids of tiled images; None for untiled images.
        boxes: I tensors (N_i, H) (N_i may be 0); None for a model without object tokens.

    Returns I tensors (T_i + C_i + N_i, H).
    """
    blocks = [list(grids)]
    for name, extra in (("crop grids", crops), ("box token tensors", boxes)):
        if extra is not None:
            if len(extra) != len(blocks[0]):
                raise ValueError(f"{len(blocks[0])} images but {len(extra)} {name}")
            blocks.append(list(extra))
    return [pieces[0] if len(pieces) == 1 else torch.cat(pieces) for pieces in zip(*blocks)]


def image_views(global_grids: torch.Tensor, crops: Sequence[torch.Tensor]) -> torch.Tensor:
    """The views of each tiled image one after another, ``[global view][crop 1]..[crop n_i]`` for image 0, then
    image 1, ...: the router's input rows (AVG-LLaVA scores every view of an image).

    Args:
        global_grids: (I, T, H), each image's global grid.
        crops: I tensors (n_i, T, H), each image's crop grids (row-major).

    Returns (sum_i (1 + n_i), T, H).
    """
    if len(crops) != len(global_grids):
        raise ValueError(f"{len(global_grids)} images but {len(crops)} crop stacks")
    return torch.cat([torch.cat([grid[None], image_crops]) for grid, image_crops in zip(global_grids, crops)])


def group_frames(input_ids: torch.Tensor, attention_mask: torch.Tensor, frame_tokens: Sequence[torch.Tensor],
                 frames_per_video: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """Per-image/frame tokens -> one tensor per placeholder, in the batch's row-major placeholder order.

    Args:
        input_ids: (B, L) with -200 at images and -201 at videos.
        attention_mask: (B, L), True on real tokens (padding is never a placeholder).
        frame_tokens: I tensors (T_i, H) in batch order, a video's frames consecutive and in time order.
        frames_per_video: (V,) frames of each video in batch order, or None when the batch has no video.

    Returns P tensors: an image's own (T_i, H), a video's frames concatenated (sum of its T_i, H).
    """
    takes = frames_per_placeholder(input_ids, attention_mask, len(frame_tokens), frames_per_video)
    if takes is None:  # no video: each placeholder takes one image (placement checks the count)
        return list(frame_tokens)
    grouped, start = [], 0
    for take in takes:
        piece = frame_tokens[start:start + take]
        grouped.append(piece[0] if take == 1 else torch.cat(list(piece)))
        start += take
    return grouped


def place_visual_tokens(embed_tokens: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        labels: Optional[torch.Tensor],
                        visual_tokens: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Replace the ``i``-th placeholder of the batch (row-major order) by ``visual_tokens[i]``.

    Args:
        embed_tokens: the LLM's input embedding layer.
        input_ids: (B, L), right-padded, ``IMAGE_TOKEN_INDEX`` (-200) at each image, -201 at each video.
        attention_mask: (B, L), True on real tokens.
        labels: (B, L) or None.
        visual_tokens: one tensor (T_i, H) per placeholder, in batch order (a video's frames already joined by
            :func:`group_frames`).

    Returns:
        ``inputs_embeds`` (B, L', H), ``attention_mask`` (B, L') in the input's dtype, ``position_ids`` (B, L')
        and ``labels`` (B, L') (-100 on visual tokens and padding), right-padded to the longest new sequence L'.
    """
    mask = attention_mask.bool()
    is_image = is_placeholder(input_ids) & mask
    if int(is_image.sum()) != len(visual_tokens):
        raise count_mismatch_error(int(is_image.sum()), len(visual_tokens))
    if labels is None:
        labels = torch.full_like(input_ids, IGNORE_INDEX)

    # Embed every real token once; placeholders get a valid id (0) and are then dropped.
    text_embeds = embed_tokens(torch.where(is_image, torch.zeros_like(input_ids), input_ids))
    images = iter(visual_tokens)
    sequences, sequence_labels = [], []
    for embeds, ids, sample_labels, sample_mask in zip(text_embeds, input_ids, labels, mask):
        embeds, ids, sample_labels = embeds[sample_mask], ids[sample_mask], sample_labels[sample_mask]
        pieces, piece_labels, start = [], [], 0
        for pos in is_placeholder(ids).nonzero().flatten().tolist():
            image = next(images).to(embeds.dtype)
            pieces += [embeds[start:pos], image]
            piece_labels += [sample_labels[start:pos], sample_labels.new_full((image.shape[0],), IGNORE_INDEX)]
            start = pos + 1
        sequences.append(torch.cat(pieces + [embeds[start:]]))
        sequence_labels.append(torch.cat(piece_labels + [sample_labels[start:]]))

    batch, length = len(sequences), max(s.shape[0] for s in sequences)
    inputs_embeds = text_embeds.new_zeros(batch, length, text_embeds.shape[-1])
    new_labels = labels.new_full((batch, length), IGNORE_INDEX)
    new_mask = torch.zeros(batch, length, dtype=torch.bool, device=input_ids.device)
    for b, (sequence, sequence_label) in enumerate(zip(sequences, sequence_labels)):
        inputs_embeds[b, :sequence.shape[0]] = sequence
        new_labels[b, :sequence.shape[0]] = sequence_label
        new_mask[b, :sequence.shape[0]] = True
    position_ids = torch.arange(length, device=input_ids.device).expand(batch, length) * new_mask
    return dict(inputs_embeds=inputs_embeds, attention_mask=new_mask.to(attention_mask.dtype),
                position_ids=position_ids, labels=new_labels)


def assemble(embed_tokens: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             labels: Optional[torch.Tensor], images: Sequence[torch.Tensor],
             frames_per_video: Optional[torch.Tensor] = None) -> Dict[str, Optional[torch.Tensor]]:
    """The LLM's keyword arguments for a batch whose images/frames are ``images`` (from :func:`image_sequences`).

    Args:
        embed_tokens, input_ids, attention_mask: as for :func:`place_visual_tokens`.
        labels: (B, L), or None at inference (the result's ``labels`` is then None too).
        images: I tensors (T_i + C_i + N_i, H), in batch order, a video's frames consecutive and in time order.
        frames_per_video: (V,) frames of each video in batch order; None when the batch has no video.

    Returns ``inputs_embeds``, ``attention_mask``, ``position_ids`` and ``labels`` as :func:`place_visual_tokens`.
    """
    visual_tokens = group_frames(input_ids, attention_mask, images, frames_per_video)
    llm_inputs = place_visual_tokens(embed_tokens, input_ids, attention_mask, labels, visual_tokens)
    if labels is None:
        llm_inputs["labels"] = None
    return llm_inputs


__all__ = ["ImageParts", "assemble", "count_mismatch_error", "group_frames", "image_sequences",
           "place_visual_tokens"]
