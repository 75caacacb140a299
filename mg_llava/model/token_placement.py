"""Put each image's visual tokens where its ``<image>`` placeholder is (a video's where its ``<video>`` is).

Unlike XTuner's ``prepare_inputs_labels_for_multimodal``, a text-only sample consumes no image (no phantom row)
and every image may have its own number of tokens (576 fused + N_i box tokens).
"""
from typing import Dict, Sequence

import torch
from xtuner.utils import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from .video_tokens import VIDEO_TOKEN_INDEX, is_placeholder


def count_mismatch_error(num_placeholders: int, num_images: int) -> ValueError:
    return ValueError(f"the batch has {num_placeholders} image placeholders (token id {IMAGE_TOKEN_INDEX}; a video's "
                      f"{VIDEO_TOKEN_INDEX} counts as one) but {num_images} images")


def place_visual_tokens(embed_tokens: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor, visual_tokens: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Replace the ``i``-th placeholder of the batch (row-major order) by ``visual_tokens[i]``.

    Args:
        embed_tokens: the LLM's input embedding layer.
        input_ids: (B, L), right-padded, ``IMAGE_TOKEN_INDEX`` (-200) at each image, -201 at each video.
        attention_mask: (B, L), True on real tokens.
        labels: (B, L) or None.
        visual_tokens: one tensor (T_i, H) per placeholder, in batch order (a video's frames already joined by
            :func:`~mg_llava.model.video_tokens.group_frames`).

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
