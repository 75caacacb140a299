"""The mean of RoIAlign over its output grid, with mmcv's ``roi_align`` on the upsampled map, in chunks: the
reference the separable operator (``separable_roi_mean.py``) is checked against, and selectable with
``MultiScaleRoIFeatures(impl="roi_align")``.

Shape shorthand: I images; N_i boxes of image i; C_k channels and (h_k, w_k) size of stage k; (h0, w0) the stage-0
size; P the RoIAlign output side.

Done naively, F' for one 768 image is 405 MiB in fp32 and the (N, C, P, P) RoI output for 100 boxes ~3.6 GB. Every
channel of F' is independent (upsampling, RoIAlign and the mean are all per channel), so we walk the image's
channels in groups of ``channel_chunk`` and its boxes in groups of ``box_chunk``: the largest temporaries are one
upsampled group (channel_chunk, h0, w0) and one RoI output (box_chunk, channel_chunk, P, P), i.e.
4 * channel_chunk * (h0 * w0 + box_chunk * P * P) bytes in fp32 (~70 MB with the defaults at 768), whatever the
number of boxes or images.
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def roi_align_means(stage_maps: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], scale: float,
                    output_size: int, sampling_ratio: int = 0, channel_chunk: int = 128,
                    box_chunk: int = 32) -> List[torch.Tensor]:
    """As :func:`mg_llava.model.separable_roi_mean.separable_roi_means` (same arguments and result), one image
    at a time."""
    return [_one_image([m[i] for m in stage_maps], b, scale, output_size, sampling_ratio, channel_chunk, box_chunk)
            for i, b in enumerate(boxes)]


def _one_image(maps: List[torch.Tensor], boxes: torch.Tensor, scale: float, output_size: int, sampling_ratio: int,
               channel_chunk: int, box_chunk: int) -> torch.Tensor:
    """maps [(C_k, h_k, w_k)], boxes (N, 4) input pixels -> (N, C) float32."""
    device = maps[0].device
    out = torch.empty(boxes.shape[0], sum(m.shape[0] for m in maps), device=device, dtype=torch.float32)
    if boxes.shape[0] == 0:
        return out
    # mmcv rois are (batch index, x1, y1, x2, y2); each call sees a single image, so the index is 0.
    rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1).to(device, torch.float32)
    first = 0
    for fmap in maps:
        for start in range(0, fmap.shape[0], channel_chunk):
            channels = fmap[start:start + channel_chunk]
            _pool_channels(channels, maps[0].shape[-2:], rois, scale, output_size, sampling_ratio, box_chunk,
                           out[:, first + start:first + start + channels.shape[0]])
        first += fmap.shape[0]
    return out


def _pool_channels(channels: torch.Tensor, size, rois: torch.Tensor, scale: float, output_size: int,
                   sampling_ratio: int, box_chunk: int, out: torch.Tensor):
    """channels (c, h_k, w_k) of one stage -> the RoI means of those channels of F', written to out (N, c).

    A function of its own so that each upsampled group and RoI output is freed as soon as it is used (a loop
    variable would keep the previous one alive while the next is allocated, doubling the peak).
    """
    from mmcv.ops import roi_align  # compiled op; only this implementation needs it

    group = channels[None].float()  # (1, c, h_k, w_k)
    if group.shape[-2:] != size:
        group = F.interpolate(group, size=size, mode="bilinear", align_corners=False)
    group = group.contiguous()
    for start in range(0, rois.shape[0], box_chunk):
        stop = start + box_chunk
        out[start:stop] = roi_align(group, rois[start:stop], output_size, scale, sampling_ratio, "avg",
                                    False).mean(dim=(2, 3))
