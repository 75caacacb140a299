"""MMFuser: the deep CLIP layer queries CLIP's own shallow layers through deformable attention.

The design (``related_systems.md``, MMFuser): the last layers of a ViT are semantically aligned but lose detail that
shallow layers keep. The query layer's tokens attend, by multi-scale deformable cross-attention, to the LayerNorm'd
shallow layers ("levels"), each sampled around the query's own grid position; a single-level deformable
self-attention refines the result; two zero-initialised scales add it to the query, so the module starts as the
identity (plain LLaVA-1.5 tokens). The attention is mmcv's ``MultiScaleDeformableAttention`` (its parameters, its
initialisation and its sampling kernels: CUDA on GPU, ``grid_sample`` elsewhere).

Shape shorthand: I images, K levels, T = h * w tokens of one layer (576 = 24 x 24 for ViT-L/14-336), C channels
(1024), M heads, P sampling points per head and level.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch

from mg_llava.registry import MODELS, build


def grid_reference_points(height: int, width: int, device=None) -> torch.Tensor:
    """The centres of a row-major ``height`` x ``width`` token grid, (h*w, 2) as (x, y) in [0, 1] (mmcv's
    normalised sampling space: 0 and 1 are the outer edges of the map, pixel centres sit at (j + 0.5) / w)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) / width, (ys.flatten() + 0.5) / height], dim=-1)


def deformable_attention(attn: MultiScaleDeformableAttention, query: torch.Tensor, value: torch.Tensor,
                         spatial_shapes: torch.Tensor, reference_points: torch.Tensor) -> torch.Tensor:
    """``attn``'s deformable attention without its residual: query (I, T, C), value (I, sum_k h_k w_k, C) with the
    levels' maps flattened row-major one after another, spatial_shapes (K, 2) as (h, w) (a long tensor on the CPU,
    whatever the device of the rest), reference_points (I, T, K, 2) normalised (x, y) -> (I, T, C).

    The same computation as ``attn.forward(query, value=value, identity=0, ...)`` with ``batch_first=True`` (a test
    checks it); it is spelt out here for one reason: mmcv's CUDA kernel has no bfloat16 (the real configs train in
    bf16), so the sampling (locations, weights, values) runs in float32 whatever the model's dtype, and the
    projections stay in it.
    """
    images, queries, _ = query.shape
    heads, levels, points = attn.num_heads, attn.num_levels, attn.num_points
    if spatial_shapes.shape[0] != levels or value.shape[1] != int(spatial_shapes.prod(-1).sum()):
        raise ValueError(f"{levels} levels expected; got spatial_shapes {spatial_shapes.tolist()} for "
                         f"{value.shape[1]} value tokens")
    value = attn.value_proj(value).view(images, value.shape[1], heads, -1)
    offsets = attn.sampling_offsets(query).view(images, queries, heads, levels, points, 2)
    weights = attn.attention_weights(query).view(images, queries, heads, levels * points).softmax(-1)
    weights = weights.view(images, queries, heads, levels, points)
    # offsets are in cells of each level's map: divide by its (w, h)
    normaliser = spatial_shapes.flip(-1).to(offsets.device, torch.float32)[:, None, :]  # (K, 1, 2) as (w, h)
    locations = reference_points[:, :, None, :, None, :] + offsets.float() / normaliser
    value, weights = value.float(), weights.float()
    if value.is_cuda:
        level_start_index = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(-1).cumsum(0)[:-1]])
        # the kernel walks the batch in steps of min(I, im2col_step) and requires I to be a multiple of it
        step = math.gcd(images, attn.im2col_step)
        sampled = MultiScaleDeformableAttnFunction.apply(value, spatial_shapes.to(value.device),
                                                         level_start_index.to(value.device), locations, weights, step)
    else:
        sampled = multi_scale_deformable_attn_pytorch(value, spatial_shapes, locations, weights)
    return attn.output_proj(sampled.to(query.dtype))


@MODELS.register_module()
class MultiLayerDeformableFusion(nn.Module):
    """MMFuser. ``low`` (I, K + 1, T, C): the K shallow layers, then the query layer F_q (the order of
    ``CLIPVisionEncoder(select_layer=(-22, -17, -12, -7, -2))``) ->

        F_ca = DeformCrossAttn(LN_q(F_q), LN_l(levels))       reference points: the query's own grid centres
        F_sa = DeformSelfAttn(LN_c(F_ca))                     one level: the F_ca grid itself
        out  = F_q + g1 * (F_ca + g2 * F_sa)                  g1, g2 per channel, zero at init

    out (I, T, C) is the identity on F_q at init. With ``high_res_fusion`` (e.g. ``ConvGateFusion``), ``out`` then
    goes through it with the high-res map, as MG-LLaVA's low-res tokens do, and that module's output is returned.

    It trains wherever the fusion trains: as ``fuse_module`` it is on the projector side, in both stages
    (``MGLLaVAModel.trainable_prefixes``), and ``freeze_llm`` does not touch it.

    Args:
        low_channels: C, the CLIP width (also the output width without ``high_res_fusion``).
        high_channels: channels of the last high-res stage; passed on to ``high_res_fusion``.
        num_levels: K, the shallow layers (MMFuser: 4).
        num_heads: M (MMFuser: 16 at C = 1024).
        num_points: P, sampling points per head and level, in both attentions (MMFuser: 4).
        high_res_fusion: config of a fusion applied afterwards with the high-res map (MG-LLaVA + MMFuser), or None.
    """

    def __init__(self, low_channels: int, high_channels: Optional[int] = None, num_levels: int = 4,
                 num_heads: int = 16, num_points: int = 4, high_res_fusion: Optional[dict] = None):
        super().__init__()
        self.in_layers = num_levels + 1
        self.query_norm = nn.LayerNorm(low_channels)
        self.level_norm = nn.LayerNorm(low_channels)
        self.cross_norm = nn.LayerNorm(low_channels)
        common = dict(embed_dims=low_channels, num_heads=num_heads, num_points=num_points, dropout=0.0,
                      batch_first=True)
        self.cross_attn = MultiScaleDeformableAttention(num_levels=num_levels, **common)
        self.self_attn = MultiScaleDeformableAttention(num_levels=1, **common)
        self.cross_scale = nn.Parameter(torch.zeros(low_channels))  # g1
        self.self_scale = nn.Parameter(torch.zeros(low_channels))  # g2
        if high_res_fusion is None:
            self.high_res_fusion = None
            self.out_channels, self.uses_high_res = low_channels, False
        else:
            self.high_res_fusion = build(high_res_fusion, low_channels=low_channels, high_channels=high_channels)
            self.out_channels = self.high_res_fusion.out_channels
            self.uses_high_res = self.high_res_fusion.uses_high_res

    def forward(self, low: torch.Tensor, high: Optional[torch.Tensor] = None) -> torch.Tensor:
        """low (I, K + 1, T, C), high (I, C_S, h, w) or None -> (I, T, C) (or ``high_res_fusion``'s output)."""
        if low.dim() != 4 or low.shape[1] != self.in_layers:
            raise ValueError(f"{type(self).__name__} takes {self.in_layers} CLIP layers as (I, {self.in_layers}, T, C) "
                             f"({self.in_layers - 1} levels + the query); got a tensor of shape {tuple(low.shape)}")
        images, _, tokens, channels = low.shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"{tokens} tokens per layer do not form a square grid")
        low = low.to(self.cross_scale.dtype)
        query, levels = low[:, -1], low[:, :-1]
        shapes = torch.tensor([[side, side]] * (self.in_layers - 1), device="cpu")
        centres = grid_reference_points(side, side, low.device)[None, :, None]  # (1, T, 1, 2)
        cross = deformable_attention(self.cross_attn, self.query_norm(query), self.level_norm(levels).flatten(1, 2),
                                     shapes, centres.expand(images, -1, self.in_layers - 1, -1))
        normed = self.cross_norm(cross)
        refined = deformable_attention(self.self_attn, normed, normed, shapes[:1], centres.expand(images, -1, 1, -1))
        fused = query + self.cross_scale * (cross + self.self_scale * refined)
        return fused if self.high_res_fusion is None else self.high_res_fusion(fused, high)
