"""The mean of RoIAlign over its output grid, computed exactly as two small matrix products per stage.

Shape shorthand: I images; N_i boxes of image i, M = max_i N_i; C_k channels and (h_k, w_k) size of stage k;
(h0, w0) the stage-0 size; P the RoIAlign output side; G the samples per bin along one axis (RoIAlign's
``roi_bin_grid``).

Why it is exact. mmcv's RoIAlign (``aligned=False``, average pooling) samples a box on a grid of rows y_r and
columns x_s (P x G of each); a sample outside [-1, size] along either axis contributes 0, and otherwise the sample
is the bilinear mix ``a(y_r)^T F b(x_s)`` of its 4 neighbours (``a``, ``b`` one-hot-like weight vectors, with
mmcv's clamping at 0 and at the last row/column). The condition and the weights factor into a row part and a
column part, so the mean over the whole P x P grid is ``w_y^T F w_x / (P^2 G_h G_w)`` with ``w_y = sum_r a(y_r)``
(h0,) and ``w_x = sum_s b(x_s)`` (w0,). Bilinear upsampling (``align_corners=False``) of stage k to stage 0 is
``U_h S_k U_w^T`` with fixed (h0, h_k), (w0, w_k) matrices, so stage k contributes
``(U_h^T w_y)^T S_k (U_w^T w_x)``: the upsampled map F' is never formed. Sample positions are computed in float32
with mmcv's operation order, so boxes whose samples fall on a border get the same in/out decision as in mmcv.

Cost per image: sum_k C_k h_k w_k M multiply-adds (1.3 G at 768 px, ConvNeXt-L, 100 boxes) in one batched matmul
per stage and channel chunk; memory: the (h0 w0, box_chunk) outer-product weights of each image and one float32
copy of ``channel_chunk`` channels when the maps are not float32.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F


def axis_weights(start: torch.Tensor, end: torch.Tensor, size: int, output_size: int,
                 sampling_ratio: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed bilinear weights of one axis of RoIAlign's sample grid (mmcv, ``aligned=False``).

    Args:
        start, end: (N,) float32, the box sides along this axis in feature-map cells (input pixels x scale).
        size: the map's length along this axis.
        output_size: P.
        sampling_ratio: samples per bin along the axis; <= 0 is adaptive, ``ceil(roi_length / P)`` per box.

    Returns:
        weights (N, size) float32, ``sum_r a(y_r)`` over the box's P x G sample positions; grid (N,) int64, G.
    """
    length = torch.clamp(end - start, min=1.0)  # mmcv keeps boxes at least one cell long (aligned=False)
    bin_size = length / output_size
    if sampling_ratio > 0:
        grid = torch.full_like(start, sampling_ratio, dtype=torch.int64)
    else:
        grid = torch.ceil(length / output_size).to(torch.int64)
    weights = start.new_zeros(len(start), size)
    # Boxes with the same G share one sample layout; G is 1-4 for real boxes at 768 px and P = 56.
    for samples in grid.unique().tolist():
        rows = (grid == samples).nonzero().squeeze(1)
        k = torch.arange(output_size * samples, device=start.device)
        cell = (k // samples).to(torch.float32)  # ph
        offset = (k % samples).to(torch.float32) + 0.5  # iy + .5
        bins = bin_size[rows, None]
        # mmcv: roi_start + ph * bin_size + (iy + .5) * bin_size / G, in float32, in this order.
        position = start[rows, None] + cell * bins + offset * bins / samples
        inside = (position >= -1.0) & (position <= size)
        position = position.clamp(0, size)
        low = position.to(torch.int64)  # position >= 0, so truncation is floor
        last = low >= size - 1
        low = torch.where(last, size - 1, low)
        high = torch.where(last, low, low + 1)
        frac = torch.where(last, 0.0, position - low)  # at the last cell mmcv sets y = y_low
        part = weights.new_zeros(len(rows), size)
        part.scatter_add_(1, low, (1.0 - frac) * inside)
        part.scatter_add_(1, high, frac * inside)
        weights[rows] = part
    return weights, grid


def upsample_matrix(source: int, target: int, device) -> torch.Tensor:
    """(target, source): row i holds the weights ``F.interpolate(bilinear, align_corners=False)`` gives the source
    cells for output cell i (obtained from torch itself, by upsampling an identity along one axis)."""
    identity = torch.eye(source, device=device)[None, :, :, None]  # channel j = the indicator of cell j
    return F.interpolate(identity, size=(target, 1), mode="bilinear", align_corners=False)[0, :, :, 0].T


@torch.no_grad()
def separable_roi_means(stage_maps: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], scale: float,
                        output_size: int, sampling_ratio: int = 0, channel_chunk: int = 64,
                        box_chunk: int = 128) -> List[torch.Tensor]:
    """Mean over the P x P grid of RoIAlign on concat_k(bilinear upsampling of stage k to (h0, w0)), per box.

    Args:
        stage_maps: [(I, C_k, h_k, w_k)], stage 0 first (its size is the one RoIAlign reads).
        boxes: I tensors (N_i, 4), xyxy in input pixels; N_i may be 0.
        scale: feature-map cells per input pixel (h0 / input side).
        output_size, sampling_ratio: RoIAlign's P and sampling ratio (0 = adaptive).
        channel_chunk: channels cast to float32 at once (float32 maps are read in place, whole).
        box_chunk: boxes per image whose (h0 w0)-sized weights exist at once.

    Returns:
        I float32 tensors (N_i, sum_k C_k), channels in stage order.
    """
    num_images = stage_maps[0].shape[0]
    height, width = stage_maps[0].shape[-2:]
    device = stage_maps[0].device
    counts = [len(b) for b in boxes]
    most = max(counts, default=0)
    out = torch.zeros(num_images, most, sum(m.shape[1] for m in stage_maps), device=device)
    if most == 0:
        return [out[i, :0] for i in range(num_images)]

    cells = torch.cat(list(boxes)).to(device, torch.float32) * torch.tensor(scale, dtype=torch.float32)
    w_y, grid_y = axis_weights(cells[:, 1], cells[:, 3], height, output_size, sampling_ratio)
    w_x, grid_x = axis_weights(cells[:, 0], cells[:, 2], width, output_size, sampling_ratio)
    w_y = w_y / (output_size ** 2 * (grid_y * grid_x).clamp(min=1)).to(torch.float32)[:, None]
    # Pad to (I, M, size) so that each stage is one batched matmul over the images; padded rows are zero.
    image = torch.repeat_interleave(torch.arange(num_images, device=device), torch.tensor(counts, device=device))
    slot = torch.cat([torch.arange(n, device=device) for n in counts])
    rows_y = w_y.new_zeros(num_images, most, height).index_put_((image, slot), w_y)
    rows_x = w_x.new_zeros(num_images, most, width).index_put_((image, slot), w_x)

    first = 0
    for fmap in stage_maps:
        channels, size_y, size_x = fmap.shape[1:]
        chunk = channels if fmap.dtype == torch.float32 else channel_chunk
        stage_y = rows_y @ upsample_matrix(size_y, height, device)  # (I, M, h_k)
        stage_x = rows_x @ upsample_matrix(size_x, width, device)  # (I, M, w_k)
        for b0 in range(0, most, box_chunk):
            b1 = min(b0 + box_chunk, most)
            # (I, h_k w_k, boxes): the outer product w_y w_x^T of each box, flattened like the map.
            outer = (stage_y[:, b0:b1, :, None] * stage_x[:, b0:b1, None, :]).flatten(2).transpose(1, 2)
            for c0 in range(0, channels, chunk):
                part = fmap[:, c0:c0 + chunk].float().flatten(2)  # (I, c, h_k w_k); a view for float32
                out[:, b0:b1, first + c0:first + c0 + part.shape[1]] = torch.bmm(part, outer).transpose(1, 2)
            del outer
        first += channels
    return [out[i, :n] for i, n in enumerate(counts)]
