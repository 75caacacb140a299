"""Parameters and compute of the paper's Table 5 ablation modules next to the Conv-Gate, at full size (CLIP ViT-L/14-336
low-res tokens, ConvNeXt-L at 768, Vicuna-7B), for one image.

    python tools/flops_table5.py [--boxes 10] [--text-tokens 256] [--json table5_flops.json]

Each row is one config of xtuner_configs/vicuna_7b_v15/table5/. For each: the row's own module (the fusion, or the
Conv-Gate plus the cross-attention block), the projectors (their input width and row count follow the module), the
visual tokens the LLM gets for the image (grid + one per box, or the grid only for F-to-B), and the whole forward pass
(CLIP, ConvNeXt, object branch, module, projectors, Vicuna-7B over text + visual tokens). Counted as
``tools/flops_report.py`` counts (``mg_llava.benchmarking``): modules built on the meta device, forward multiply-adds
(MACs) from ``torch.utils.flop_counter`` (matmuls and convolutions; FLOPs = 2 x MACs); bilinear resizing, which
Patch Info Mining does to every ConvNeXt stage, is counted analytically (4 MACs per output sample and channel).
The COCO-80 row changes the boxes, not the model: its figures are the Conv-Gate's.
"""
import argparse
import json

import torch

from mg_llava.benchmarking import HIGH_RES, build_llm, count, vision_components
from mg_llava.model import (
    BoxToFusedCrossAttention,
    ChannelConcatFusion,
    ConvGateFusion,
    FusedToBoxCrossAttention,
    PatchInfoMining,
    PerceiverResampler,
)
from mg_llava.model.reference_configs import LLMS

LLM = "Vicuna-7B"
LOW_CHANNELS, STAGES = 1024, [192, 384, 768, 1536]  # CLIP ViT-L width, ConvNeXt-L stage channels
# (label, fusion, object merge) in Table 5's order; the reference row first
ROWS = {
    "conv_gate": ("Conv-Gate (reference)", ConvGateFusion, None),
    "channel_concat": ("Channel Concat", ChannelConcatFusion, None),
    "patch_info_mining": ("Patch Info Mining", PatchInfoMining, None),
    "resampler": ("Resampler", PerceiverResampler, None),
    "f_to_b": ("F-to-B Cross-Attention", ConvGateFusion, FusedToBoxCrossAttention),
    "b_to_f": ("B-to-F Cross-Attention", ConvGateFusion, BoxToFusedCrossAttention),
    "coco80": ("COCO-80 tags", ConvGateFusion, None),
}


def fusion_inputs(tokens, reads_stages):
    """One image's low-res tokens and the ConvNeXt-L maps at 768 (every stage, or the last one)."""
    low = torch.zeros(1, tokens, LOW_CHANNELS)
    stages = [torch.zeros(1, c, HIGH_RES // 4 // 2 ** k, HIGH_RES // 4 // 2 ** k) for k, c in enumerate(STAGES)]
    return low, stages if reads_stages else stages[-1]


def count_fusion(fusion_cls, tokens):
    """(params, MACs, out_channels, out_tokens) of one image through the fusion."""
    reads_stages = getattr(fusion_cls, "reads_stages", False)
    args = dict(low_channels=LOW_CHANNELS, high_channels=STAGES if reads_stages else STAGES[-1])
    if getattr(fusion_cls, "takes_grid_tokens", False):
        args["grid_tokens"] = tokens
    with torch.device("meta"):
        probe = fusion_cls(**args)
    params, macs = count(lambda: fusion_cls(**args), lambda: fusion_inputs(tokens, reads_stages))
    if reads_stages:  # every coarser stage resized to the finest one's grid
        finest = HIGH_RES // 4
        macs += sum(STAGES[1:]) * finest * finest * 4
    return params, macs, probe.out_channels, getattr(probe, "num_tokens", tokens)


def count_merge(merge_cls, fused_channels, tokens, boxes):
    box_channels = sum(STAGES)
    return count(lambda: merge_cls(fused_channels=fused_channels, box_channels=box_channels),
                 lambda: (torch.zeros(1, tokens, fused_channels), [torch.zeros(boxes, box_channels)]))


def projector(in_channels, hidden, rows):
    from mg_llava.model.mg_llava_model import mlp_projector

    return count(lambda: mlp_projector(in_channels, hidden, 2), lambda: (torch.zeros(1, max(rows, 1), in_channels),))


def report(boxes, text_tokens):
    vision, grid = vision_components(boxes)
    hidden = LLMS[LLM][1]["hidden_size"]
    llm_macs = {}
    rows = {}
    for row, (label, fusion_cls, merge_cls) in ROWS.items():
        params, macs, channels, tokens = count_fusion(fusion_cls, grid)
        module = dict(params=params, macs=macs)
        if merge_cls is not None:
            merge_params, merge_macs = count_merge(merge_cls, channels, tokens, boxes)
            module = dict(params=params + merge_params, macs=macs + merge_macs, fusion_params=params,
                          fusion_macs=macs, merge_params=merge_params, merge_macs=merge_macs)
        box_tokens = 0 if getattr(merge_cls, "appends_boxes", True) is False else boxes
        p_f, p_b = projector(channels, hidden, tokens), (0, 0)
        if box_tokens or merge_cls is None:  # a box projector exists (0 boxes: its parameters, no compute)
            p_b = projector(sum(STAGES), hidden, boxes)
            p_b = (p_b[0], p_b[1] if boxes else 0)
        visual = tokens + box_tokens
        if visual not in llm_macs:
            llm_macs[visual] = count(lambda: build_llm(LLM),
                                     lambda: (torch.zeros(1, text_tokens + visual, dtype=torch.long),), fake=True)
        llm = llm_macs[visual]
        fixed = [vision["clip"], vision["convnext"], vision["roi_align"]]
        total_params = sum(p for p, _ in fixed) + module["params"] + p_f[0] + p_b[0] + llm[0]
        total_macs = sum(m for _, m in fixed) + module["macs"] + p_f[1] + p_b[1] + llm[1]
        rows[row] = dict(label=label, module=module, projectors=dict(params=p_f[0] + p_b[0], macs=p_f[1] + p_b[1]),
                         visual_tokens=visual, total=dict(params=total_params, macs=total_macs, flops=2 * total_macs))
    return dict(llm=LLM, boxes=boxes, text_tokens=text_tokens, rows=rows)


def print_table(result):
    reference = result["rows"]["conv_gate"]
    print(f"{result['llm']}, one image: {result['text_tokens']} text tokens, {result['boxes']} boxes. "
          f"MACs of one forward pass (FLOPs = 2 x MACs).")
    print(f"{'row':<26}{'module params':>14}{'module GMACs':>14}{'proj. params':>14}{'visual tok.':>12}"
          f"{'total TMACs':>12}{'vs Conv-Gate':>13}{'total params':>14}")
    for row in result["rows"].values():
        module, total = row["module"], row["total"]
        print(f"{row['label']:<26}{module['params'] / 1e6:>13.2f}M{module['macs'] / 1e9:>14.2f}"
              f"{row['projectors']['params'] / 1e6:>13.2f}M{row['visual_tokens']:>12}{total['macs'] / 1e12:>12.3f}"
              f"{total['macs'] / reference['total']['macs']:>13.3f}{total['params'] / 1e9:>13.3f}B")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=10, help="object boxes of the image (at most 100)")
    parser.add_argument("--text-tokens", type=int, default=256, help="text tokens besides the image's")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    result = report(args.boxes, args.text_tokens)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
