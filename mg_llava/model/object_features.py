"""Object features: RoIAlign on the multi-scale high-res map, averaged over the RoI grid (SPEC 1.6, Eq. 4).

Shape shorthand: I images; N_i boxes of image i; C_k channels of stage k; C = sum_k C_k (2880 for ConvNeXt-L);
(h0, w0) the stage-0 size, 1/4 of the high-res input (192x192 at 768); P the RoI output size (56).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mg_llava.registry import MODELS


@MODELS.register_module()
class MultiScaleRoIFeatures(nn.Module):
    """E_B = mean over the PxP grid of RoIAlign(F', boxes), F' = concat_k(bilinear upsample of stage k to (h0, w0)).

    RoIAlign is mmcv's with ``aligned=False``, adaptive sampling and average pooling, as in the released model;
    the spatial scale is h0 / S (0.25 at 768). Parameter-free and run without autograd: it reads the frozen
    high-res encoder only.

    Memory: done naively, F' for one 768 image is 405 MiB in fp32 and the (N, C, P, P) RoI output for 100 boxes
    ~3.6 GB. Every channel of F' is independent (upsampling, RoIAlign and the mean are all per channel), so we walk
    the image's channels in groups of ``channel_chunk`` and its boxes in groups of ``box_chunk``: the largest
    temporaries are one upsampled group (channel_chunk, h0, w0) and one RoI output (box_chunk, channel_chunk, P, P),
    i.e. 4 * channel_chunk * (h0 * w0 + box_chunk * P * P) bytes in fp32 (~70 MB with the defaults at 768), whatever
    the number of boxes or images. The numbers are those of the plain formula (see tests/model).

    Args:
        in_channels: [C_k], the stage channels of the high-res encoder (in_channels of each map, checked).
        output_size: P, the RoIAlign output side.
        sampling_ratio: RoIAlign samples per bin side; 0 = adaptive (ceil(bin size)).
        channel_chunk: channels of F' processed at once.
        box_chunk: boxes processed at once.
    """

    def __init__(self, in_channels: Sequence[int], output_size: int = 56, sampling_ratio: int = 0,
                 channel_chunk: int = 128, box_chunk: int = 32):
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = sum(self.in_channels)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.channel_chunk = channel_chunk
        self.box_chunk = box_chunk

    @torch.no_grad()
    def forward(self, stage_maps: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                image_size: Tuple[int, int]) -> List[torch.Tensor]:
        """
        Args:
            stage_maps: [(I, C_k, h_k, w_k)], stage 0 first (the finest).
            boxes: I tensors (N_i, 4), xyxy in pixels of the high-res input (N_i may be 0).
            image_size: (S_h, S_w), the high-res input size, for the spatial scale.

        Returns:
            I float32 tensors (N_i, C), channels in stage order.
        """
        channels = [m.shape[1] for m in stage_maps]
        if channels != self.in_channels:
            raise ValueError(f"stage maps have channels {channels}, expected {self.in_channels}")
        num_images = stage_maps[0].shape[0]
        if len(boxes) != num_images:
            raise ValueError(f"{len(boxes)} box tensors for {num_images} images")
        height, width = stage_maps[0].shape[-2:]
        scale = height / image_size[0]
        if width / image_size[1] != scale:
            raise ValueError(f"stage-0 map {height}x{width} is not one scale of the input {tuple(image_size)}")
        return [self._one_image([m[i] for m in stage_maps], b, scale) for i, b in enumerate(boxes)]

    def _one_image(self, maps: List[torch.Tensor], boxes: torch.Tensor, scale: float) -> torch.Tensor:
        """maps [(C_k, h_k, w_k)], boxes (N, 4) input pixels -> (N, C) float32."""
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
        device = maps[0].device
        out = torch.empty(boxes.shape[0], self.out_channels, device=device, dtype=torch.float32)
        if boxes.shape[0] == 0:
            return out
        # mmcv rois are (batch index, x1, y1, x2, y2); each call sees a single image, so the index is 0.
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1).to(device, torch.float32)
        first = 0
        for fmap in maps:
            for start in range(0, fmap.shape[0], self.channel_chunk):
                channels = fmap[start:start + self.channel_chunk]
                self._pool_channels(channels, maps[0].shape[-2:], rois, scale,
                                    out[:, first + start:first + start + channels.shape[0]])
            first += fmap.shape[0]
        return out

    def _pool_channels(self, channels: torch.Tensor, size, rois: torch.Tensor, scale: float, out: torch.Tensor):
        """channels (c, h_k, w_k) of one stage -> the RoI means of those channels of F', written to out (N, c).

        A function of its own so that each upsampled group and RoI output is freed as soon as it is used (a loop
        variable would keep the previous one alive while the next is allocated, doubling the peak).
        """
        from mmcv.ops import roi_align  # compiled op; only the object branch needs it

        group = channels[None].float()  # (1, c, h_k, w_k)
        if group.shape[-2:] != size:
            group = F.interpolate(group, size=size, mode="bilinear", align_corners=False)
        group = group.contiguous()
        for start in range(0, rois.shape[0], self.box_chunk):
            stop = start + self.box_chunk
            out[start:stop] = roi_align(group, rois[start:stop], self.output_size, scale, self.sampling_ratio,
                                        "avg", False).mean(dim=(2, 3))
