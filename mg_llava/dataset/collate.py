"""Collate samples of :class:`LLaVABoxDataset` into the batch of docs/interfaces.md.

Shape shorthand: B samples, L = longest text, I = images in the batch (a video counts its T frames), V = videos,
N_i = boxes of image (frame) i.
"""
from typing import Dict, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import get_worker_info
from xtuner.utils import DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX

from ..registry import MODELS
from .video import VIDEO_TOKEN_INDEX


@MODELS.register_module()
def llava_box_collate_fn(
    instances: Sequence[Dict], pad_index: int = DEFAULT_PAD_TOKEN_INDEX, return_hf_format: bool = False
) -> Dict:
    """Batch ``instances`` (dicts from ``LLaVABoxDataset.__getitem__``).

    Returns ``{'data': data, 'data_samples': None}`` (or ``data`` with ``return_hf_format``; ``data_samples`` is
    ``{'replaced': [...]}`` when samples of the batch stood in for unreadable ones, see ``LLaVABoxDataset``) where
    ``data`` has
    ``input_ids`` (B, L) right-padded with ``pad_index``; ``attention_mask`` (B, L) bool, True on real tokens;
    ``labels`` (B, L) with IGNORE_INDEX (-100) on padding; and, only when I > 0, ``pixel_values_aux``
    (I, 3, S_high, S_high) in sample order (uint8 from the training dataset, which the model's data preprocessor
    turns into both float views; float32 with ``pixel_values`` (I, 3, S_low, S_low) from samples that carry both
    views, as chat and evaluation make them), plus ``boxes``, a list of I (N_i, 4) tensors in high-res input
    pixels. Samples from a dataset with ``resize_on_device`` give ``images`` instead of the views: a list of I
    decoded uint8 (3, H_i, W_i) images, which the data preprocessor pads and resizes. Text-only samples add no
    image row. Tiled images (``AnyResImageViews``) add ``pixel_values_tiles``
    (sum_i rows_i x cols_i, 3, S_low, S_low; uint8 or float32 as the high-res view), each image's crops row-major in
    image order, and ``image_tiles`` LongTensor (I, 4): (rows, cols, W, H) of each image; a batch's images are all
    tiled or none. A video adds its T frames as T rows, in time order, and, only when V > 0, ``frames_per_video``
    LongTensor (V,) gives each ``<video>`` placeholder's T in batch order.
    """
    if not instances:
        raise ValueError("cannot collate an empty batch")
    input_ids = [torch.as_tensor(inst["input_ids"], dtype=torch.long) for inst in instances]
    labels = [torch.as_tensor(inst["labels"], dtype=torch.long) for inst in instances]
    lengths = torch.tensor([len(ids) for ids in input_ids])
    for inst, ids, lab in zip(instances, input_ids, labels):
        if ids.shape != lab.shape:
            raise ValueError(f"sample {inst.get('id')!r}: {len(ids)} input_ids but {len(lab)} labels")

    # The pad id may equal a real token (e.g. eos), so the mask comes from the lengths, not from the ids.
    data = dict(
        input_ids=pad_sequence(input_ids, batch_first=True, padding_value=pad_index),
        attention_mask=torch.arange(int(lengths.max()))[None, :] < lengths[:, None],
        labels=pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
    )

    per_sample = [len(inst.get("boxes", ())) for inst in instances]
    num_images = sum(per_sample)
    frames_per_video = [int(t) for inst in instances for t in inst.get("frames_per_video", ())]
    image_tokens = int((data["input_ids"] == IMAGE_TOKEN_INDEX).sum())
    video_tokens = int((data["input_ids"] == VIDEO_TOKEN_INDEX).sum())
    if video_tokens != len(frames_per_video) or image_tokens + sum(frames_per_video) != num_images:
        counts = {inst.get("id"): n for inst, n in zip(instances, per_sample)}
        videos = (f" and {video_tokens} video tokens ({VIDEO_TOKEN_INDEX}) of frames_per_video {frames_per_video}"
                  if video_tokens or frames_per_video else "")
        raise ValueError(f"{image_tokens} image tokens ({IMAGE_TOKEN_INDEX}){videos} but {num_images} images: {counts}")
    if frames_per_video:
        data["frames_per_video"] = torch.tensor(frames_per_video, dtype=torch.long)
    if num_images:
        with_images = [inst for inst in instances if len(inst["boxes"])]
        kinds = {_form(inst) for inst in with_images}
        if len(kinds) > 1:
            described = {inst.get("id"): _form(inst) for inst in with_images}
            raise ValueError(f"samples hand over their images in different forms (decoded images, the uint8 "
                             f"high-res view only, or both float views): {described}")
        if "images" in with_images[0]:  # decoded, each its own size: the preprocessor makes the views
            data["images"] = [image for inst in with_images for image in inst["images"]]
            keys = ("images",)
        else:
            keys = ("pixel_values", "pixel_values_aux") if "pixel_values" in with_images[0] else ("pixel_values_aux",)
            for key in keys:
                data[key] = _cat([inst[key] for inst in with_images])
        data["boxes"] = [boxes for inst in instances for boxes in inst["boxes"]]
        counts = {key: len(data[key]) for key in keys}
        if any(count != num_images for count in counts.values()):
            raise ValueError(f"{num_images} box lists but views for {counts}")
        tiles = [tile for inst in instances for tile in inst.get("image_tiles", ())]
        if tiles:
            _collate_tiles(instances, data, tiles, num_images)
    # samples that stood in for unreadable ones name them (LLaVABoxDataset, on_bad_sample='skip'): the model ignores
    # data_samples; mg_llava.engine.BadSamplesHook records them
    replaced = [record for inst in instances for record in inst.get("replaced", ())]
    return data if return_hf_format else {"data": data, "data_samples": dict(replaced=replaced) if replaced else None}


def _form(inst: dict) -> str:
    """How a sample hands over its images (the dataset's ``resize_on_device`` / ``uint8_views``)."""
    if "images" in inst:
        return "decoded uint8 images"
    aux = inst["pixel_values_aux"]
    return f"{aux.dtype} high-res view" + (" + pixel_values" if "pixel_values" in inst else "")


def _collate_tiles(instances, data: dict, tiles, num_images: int) -> None:
    """``image_tiles`` (I, 4) and ``pixel_values_tiles`` of a batch whose images are tiled."""
    if len(tiles) != num_images:
        counts = {inst.get("id"): len(inst.get("image_tiles", ())) for inst in instances}
        raise ValueError(f"{num_images} images but {len(tiles)} tile descriptions (image_tiles): {counts}; a batch's "
                         f"images must all be tiled or none")
    data["image_tiles"] = torch.tensor(tiles, dtype=torch.long).view(-1, 4)
    data["pixel_values_tiles"] = _cat([inst["pixel_values_tiles"] for inst in instances if inst.get("image_tiles")])
    needed = int((data["image_tiles"][:, 0] * data["image_tiles"][:, 1]).sum())
    if len(data["pixel_values_tiles"]) != needed:
        raise ValueError(f"image_tiles {data['image_tiles'].tolist()} need {needed} crops, the samples hold "
                         f"{len(data['pixel_values_tiles'])}")


def _cat(tensors):
    """``torch.cat`` along dim 0, keeping the views' memory layout (the dataset's uint8 views are channels-last
    views of the decoded images: reordering them is left to the device); inside a DataLoader worker straight into
    shared memory (as torch's ``default_collate`` does), which saves one copy on the way to the main process."""
    first = tensors[0]
    channels_last = first.dim() == 4 and all(
        t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in tensors)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    shape = (sum(len(t) for t in tensors), *first.shape[1:])
    if get_worker_info() is None:
        out = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=layout)
    else:
        storage = first._typed_storage()._new_shared(sum(t.numel() for t in tensors), device=first.device)
        out = first.new(storage).resize_(shape, memory_format=layout)
    return torch.cat(tensors, out=out)
