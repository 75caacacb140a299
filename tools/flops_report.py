"""FLOPs and parameters of MG-LLaVA against LLaVA-1.5, per component, for each LLM backbone (paper Table 4), and of
both with MMFuser (multi-layer CLIP features fused by deformable attention; ``MultiLayerDeformableFusion``).

    python tools/flops_report.py [--text-tokens 256] [--boxes 10] [--json flops.json]

Nothing is downloaded and no weights are allocated: every module is built from its known config on the meta device
and its forward is counted with ``torch.utils.flop_counter``. The LLMs are built under ``FakeTensorMode`` instead
(tensors with meta storage that report device cpu), because HF's rotary embedding opens ``torch.autocast`` on the
tensor's device, which refuses ``meta``. One image:
CLIP ViT-L/14 at 336, ConvNeXt-L trunk at 768, ``--boxes`` object tokens, ``--text-tokens`` text tokens.
Multiply-adds (MACs) are what the paper's "#TFLOPS" column reports; FLOPs = 2 x MACs. Upsampling and RoIAlign
are not matmuls, so the object branch's MACs are counted analytically (4 per bilinear sample, one sample per bin,
i.e. boxes up to 224 px at 768; the box projector is counted like the rest). MMFuser's projections are counted by
the flop counter and its deformable sampling analytically: 4 MACs per channel for the bilinear sample and 1 for the
weighted sum, at every query, level and point.
"""
import argparse
import json

import torch

from mg_llava.benchmarking import build_llm, count, vision_components
from mg_llava.model.reference_configs import LLMS

VARIANTS = {"llava_1_5": "LLaVA-1.5", "llava_1_5_mmfuser": "+MMFuser", "mg_llava": "MG-LLaVA",
            "mg_llava_mmfuser": "MG+MMFuser"}
# Paper, Table 4 (TMACs, LLaVA-1.5 -> MG-LLaVA; params) and the Param. column of its main tables (MG-LLaVA).
PAPER = {
    "Phi-3-mini-4k": dict(tmacs=(3.3, 3.73), params_b=(4.0, 4.2)),
    "Vicuna-7B": dict(tmacs=(5.76, 6.21), params_b=(7.2, 7.4)),
    "Llama-3-8B": dict(params_b=(None, 8.4)),
    "Vicuna-13B": dict(params_b=(None, 13.6)),
    "Yi-1.5-34B": dict(params_b=(None, 34.4)),
}


def projector(in_channels, hidden, rows):
    from mg_llava.model.mg_llava_model import mlp_projector

    return count(lambda: mlp_projector(in_channels, hidden, 2), lambda: (torch.zeros(1, rows, in_channels),))


def report(name, text_tokens, boxes, vision, tokens):
    hidden = LLMS[name][1]["hidden_size"]
    llava_llm = count(lambda: build_llm(name),
                      lambda: (torch.zeros(1, text_tokens + tokens, dtype=torch.long),), fake=True)
    mg_llm = count(lambda: build_llm(name),
                   lambda: (torch.zeros(1, text_tokens + tokens + boxes, dtype=torch.long),), fake=True)
    p_f = projector(1024, hidden, tokens)
    p_b = projector(2880, hidden, boxes) if boxes else (projector(2880, hidden, 1)[0], 0)
    llava = dict(clip=vision["clip"], projector=p_f, llm=llava_llm)
    mg = dict(clip=vision["clip"], convnext=vision["convnext"], fusion=vision["fusion"],
              roi_align=vision["roi_align"], bbox_projector=p_b, projector=p_f, llm=mg_llm)
    parts = dict(llava_1_5=llava, llava_1_5_mmfuser=dict(llava, mmfuser=vision["mmfuser"]), mg_llava=mg,
                 mg_llava_mmfuser=dict(mg, mmfuser=vision["mmfuser"]))
    total = lambda parts, i: sum(v[i] for v in parts.values())  # noqa: E731
    row = dict(llm=name, text_tokens=text_tokens, boxes=boxes)
    for variant, components in parts.items():
        row[variant] = {k: dict(params=v[0], macs=v[1]) for k, v in components.items()}
        row[variant + "_total"] = dict(params=total(components, 0), macs=total(components, 1),
                                       flops=2 * total(components, 1))
    row.update(macs_ratio=total(mg, 1) / total(llava, 1),
               llm_macs_per_token=(mg_llm[1] - llava_llm[1]) / boxes if boxes else None, paper=PAPER.get(name))
    return row


def print_table(rows):
    components = ["clip", "convnext", "mmfuser", "fusion", "roi_align", "bbox_projector", "projector", "llm"]
    print(f"One image: {rows[0]['text_tokens']} text tokens, {rows[0]['boxes']} boxes. GMACs of one forward pass; "
          "the paper's '#TFLOPS' are multiply-adds (TMACs). MMFuser = MultiLayerDeformableFusion.")
    for row in rows:
        print(f"\n{row['llm']:<16}{'params':>12}" + "".join(f"{label:>12}" for label in VARIANTS.values()))
        for c in components:
            params = next(row[v][c]["params"] for v in VARIANTS if c in row[v])
            macs = "".join(f"{row[v][c]['macs'] / 1e9:>12.1f}" if c in row[v] else f"{'-':>12}" for v in VARIANTS)
            print(f"  {c:<14}{params / 1e6:>11.1f}M{macs}")
        paper = row["paper"] or {}
        for label, key, scale, unit in (("total", "macs", 1e12, "TMACs"), ("", "flops", 1e12, "TFLOPs"),
                                        ("", "params", 1e9, "B params")):
            print(f"  {label:<14}{unit:>12}" + "".join(f"{row[v + '_total'][key] / scale:>12.3f}" for v in VARIANTS))
        for i, key in enumerate(k for k in ("tmacs", "params_b") if k in paper):
            base, mg = [f"{v:.2f}" if v else "-" for v in paper[key]]
            label = "paper" if i == 0 else ""
            print(f"  {label:<14}{'TMACs' if key == 'tmacs' else 'B params':>12}{base:>12}{'':>12}{mg:>12}")
        print(f"  MG-LLaVA / LLaVA-1.5 MACs: {row['macs_ratio']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-tokens", type=int, default=256, help="text tokens besides the image's")
    parser.add_argument("--boxes", type=int, default=10, help="object tokens of the image (at most 100)")
    parser.add_argument("--llm", nargs="*", default=list(LLMS), choices=list(LLMS))
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    vision, tokens = vision_components(args.boxes)
    rows = [report(name, args.text_tokens, args.boxes, vision, tokens) for name in args.llm]
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
