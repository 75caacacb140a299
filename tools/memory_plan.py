"""Will a config fit my GPUs? The predicted peak memory per GPU of a training config, and what to change if not.

    python tools/memory_plan.py CONFIG [CONFIG ...] [--gpus 8] [--gpu-mem 80] [--json plan.json]
    python tools/memory_plan.py --all [--json plan.json] [--markdown]

For each config: the parameters of its parts (the model built on the meta device, hub-named parts in their published
architectures: ``tools/benchmark_train_step.py``'s machinery, nothing downloaded), its longest admissible sample
(``mg_llava/token_budget.py``), its per-device batch, ZeRO stage, LoRA/QLoRA and gradient checkpointing. The peak of
one GPU is predicted as

    model states + vision held + max(vision transient, LLM activations + logits) + runtime overhead

- **model states**: the trainable parameters through DeepSpeed's own estimators
  (``estimate_zero2_model_states_mem_needs``: 2 P + 18 P / G; ``estimate_zero3_model_states_mem_needs``: 18 P / G +
  4 x the largest layer; no offload; DeepSpeed 0.16), plus the frozen weights in bf16 (2 bytes each; QLoRA's 4-bit NF4 LLM linears
  0.516 bytes: 0.5 + double-quantised block scales), sharded over the G GPUs by ZeRO-3 only.
- **LLM activations** per token and decoder layer, bf16, SDPA attention (no score matrix), from what autograd saves
  in a transformers Llama layer: 26 h + 8 I bytes when the LLM trains (each RMSNorm its fp32 input and bf16
  normalised copy, 6 h; the q/k/v and o inputs 4 h; SDPA's q, k, v, out 8 h; the SwiGLU MLP 2 h + 8 I); 16 h + 6 I
  when it is frozen (a frozen linear keeps no input; a norm keeps its fp32 input); LoRA on every linear adds, per
  adapter of input width d, 4 d (its dropout's output and mask, as measured on the CPU) + 2 r (the rank-r hidden): 24 h + 4 I +
  14 r for a Llama layer (7 linears), 12 h + 4 I + 8 r for Phi-3's (fused q/k/v and gate/up: 4 linears). With
  checkpointing: 2 h per layer (its input) + one layer's full set
  (the layer being recomputed). Logits: 14 bytes per token and vocabulary entry (bf16 logits, their fp32 copy, the
  shifted fp32 copy, log-softmax). ``tests/tools/test_memory_plan.py`` checks the layer coefficients against the
  bytes autograd saves in real transformers layers.
- **vision side**: the encoders run without autograd; per image in one encoder call 0.243 GiB at fp32, and 0.05 GiB
  held per image for the backward of the fusion and the projectors, halved for bf16 (measured on the CPU by
  ``tools/benchmark_video_memory.py`` at 768 px, see README "Video": 2-8 frames per call, 20 boxes each).
- **runtime overhead**: 2 GiB for the CUDA context, NCCL and cuBLAS workspaces (not measured here).

Worst case: every sample of the micro-batch at its longest (``--tokens`` for another length). Targets: 8 x 40 GB,
8 x 80 GB, 1 x 80 GB (``--gpus``/``--gpu-mem`` for the single-target mode). When a target does not fit, the plan
tries, in order, gradient checkpointing, ZeRO-3, and halving the micro-batch (doubling the accumulation, so the
global batch stays), and prints the first change that fits.
"""
import argparse
import dataclasses
import json
import os.path as osp
import sys
import tempfile
from glob import glob
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
GIB = 2 ** 30
TARGETS = [(8, 40), (8, 80), (1, 80)]  # (GPUs, GB each)
# bytes per token per decoder layer, as coefficients of (h, I): see the module docstring
LAYER_TRAINED = (26, 8)
LAYER_FROZEN = (16, 6)
LORA_BYTES_PER_INPUT = 4  # an adapter's dropout output and mask, bf16, per element of its input
LORA_LINEARS = {False: (6, 1), True: (3, 1)}  # fused q/k/v and gate/up (Phi-3)? -> linears reading h, reading I
CHECKPOINT_PER_LAYER = 2  # x h: the layer input kept by checkpointing
LOGIT_BYTES = 14  # per token and vocabulary entry
NF4_BYTES = 0.516  # per 4-bit weight, with double-quantised block scales (bitsandbytes, block 64)
VISION_TRANSIENT_FP32 = 0.243 * GIB  # per image in one encoder call
VISION_HELD_FP32 = 0.05 * GIB  # per image, until the backward
RUNTIME_OVERHEAD = 2 * GIB


@dataclasses.dataclass
class Workload:
    """What one GPU holds and computes in a training step. Parameter counts are elements."""

    name: str
    trainable: int  # parameters the optimizer updates (LoRA adapters, fusion, projectors; the LLM in stage 2)
    frozen: int  # frozen parameters in bf16 (encoders; the LLM in stage 1 or under LoRA)
    frozen_4bit: int  # frozen LLM linear weights held in 4-bit (QLoRA)
    largest_layer: int  # parameters of the largest module (ZeRO-3 gathers one at a time)
    hidden: int  # h, the LLM width
    intermediate: int  # I, the LLM's MLP width
    layers: int  # LLM decoder layers
    vocab: int
    llm_trains: bool  # the LLM's own weights train (full stage 2)
    lora: bool
    checkpointing: bool
    zero: int  # DeepSpeed ZeRO stage (2 or 3)
    batch: int  # samples per GPU per micro-step
    tokens: int  # LLM tokens per sample (worst case: the longest admissible)
    images: int  # images (frames) per sample through the encoders
    encoder_chunk: Optional[int]  # images per encoder call (None: the whole micro-batch)
    accumulation: int = 1
    lora_rank: int = 0
    num_gpus: int = 8  # the GPUs the config's global batch is laid out for
    parts: dict = dataclasses.field(default_factory=dict)  # parameters by part: llm, lora, clip, convnext
    fused_qkv: bool = False  # fused q/k/v and gate/up projections (Phi-3)

    def changed(self, **kwargs) -> "Workload":
        return dataclasses.replace(self, **kwargs)


def model_states(w: Workload, gpus: int) -> dict:
    """Bytes per GPU: DeepSpeed's estimate for the trainable parameters, plus the frozen weights."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if w.zero == 2:
        _, trainable = estimate_zero2_model_states_mem_needs(w.trainable, num_gpus_per_node=gpus, cpu_offload=False)
        frozen = 2 * w.frozen + NF4_BYTES * w.frozen_4bit
    elif w.zero == 3:
        _, trainable, _ = estimate_zero3_model_states_mem_needs(
            w.trainable, w.largest_layer, num_gpus_per_node=gpus, cpu_offload=False, cpu_offload_params=False)
        frozen = (2 * w.frozen + NF4_BYTES * w.frozen_4bit) / gpus
    else:
        raise ValueError(f"{w.name}: ZeRO stage {w.zero} is not planned (2 or 3)")
    return dict(trainable_states=float(trainable), frozen_weights=float(frozen))


def layer_bytes_per_token(w: Workload) -> float:
    """Bytes autograd keeps per token in one decoder layer (no checkpointing)."""
    a, b = LAYER_TRAINED if w.llm_trains else LAYER_FROZEN
    total = a * w.hidden + b * w.intermediate
    if w.lora:
        on_h, on_i = LORA_LINEARS[w.fused_qkv]
        total += LORA_BYTES_PER_INPUT * (on_h * w.hidden + on_i * w.intermediate) + 2 * w.lora_rank * (on_h + on_i)
    return total


def activations(w: Workload) -> dict:
    tokens = w.batch * w.tokens
    layer = layer_bytes_per_token(w) * tokens
    llm = (w.layers * CHECKPOINT_PER_LAYER * w.hidden * tokens + layer) if w.checkpointing else w.layers * layer
    images = w.batch * w.images
    chunk = min(images, w.encoder_chunk or images)
    return dict(llm_activations=float(llm), logits=float(LOGIT_BYTES * tokens * w.vocab),
                vision_transient=VISION_TRANSIENT_FP32 / 2 * chunk, vision_held=VISION_HELD_FP32 / 2 * images)


def peak(w: Workload, gpus: int) -> dict:
    """{part: bytes} and ``peak`` (bytes) of one GPU."""
    parts = dict(model_states(w, gpus), **activations(w), runtime=float(RUNTIME_OVERHEAD))
    parts["peak"] = (parts["trainable_states"] + parts["frozen_weights"] + parts["vision_held"] + parts["runtime"]
                     + max(parts["vision_transient"], parts["llm_activations"] + parts["logits"]))
    return parts


def remedy(w: Workload, gpus: int, gpu_gb: float) -> Optional[str]:
    """The least disruptive change with which ``w`` fits ``gpus`` x ``gpu_gb`` GB, or None: gradient checkpointing
    first (it only costs recomputation), then the largest micro-batch (halving it, with the accumulation doubled so
    the global batch stays) that fits, at the config's ZeRO stage or else with ZeRO-3 (not for a 4-bit LLM, whose
    quantised weights the configs keep whole)."""
    limit = gpu_gb * 1e9
    steps = []
    if not w.checkpointing:
        w = w.changed(checkpointing=True)
        steps.append("gradient checkpointing")
    stages = [w.zero] + ([3] if w.zero < 3 and gpus > 1 and not w.frozen_4bit else [])
    batch, accumulation = w.batch, w.accumulation
    while batch >= 1:
        for zero in stages:
            if peak(w.changed(batch=batch, accumulation=accumulation, zero=zero), gpus)["peak"] <= limit:
                change = steps + (["ZeRO-3"] if zero != w.zero else [])
                if batch != w.batch:
                    change.append(f"micro-batch {batch} x accumulation {accumulation}")
                return " + ".join(change)
        batch, accumulation = batch // 2, accumulation * 2
    return None


def fits_table(w: Workload, targets=None) -> List[dict]:
    """One row per target (GPUs, GB each): the default targets, and the config's own GPU count at 80 GB."""
    targets = list(TARGETS if targets is None else targets)
    if (w.num_gpus, 80) not in targets:
        targets.append((w.num_gpus, 80))
    rows = []
    for gpus, gb in targets:
        p = peak(w, gpus)
        fits = p["peak"] <= gb * 1e9
        rows.append(dict(gpus=gpus, gpu_gb=gb, peak_gb=p["peak"] / 1e9, fits=fits,
                         change=None if fits else (remedy(w, gpus, gb) or "does not fit: more GPUs, or offload"),
                         parts_gb={k: v / 1e9 for k, v in p.items()}))
    return rows


# ------------------------------------------------------------------------------------------------ from a config
def count_parts(cfg) -> dict:
    """Parameter counts of the config's model built on the meta device, by role."""
    from xtuner.registry import BUILDER

    sys.path.insert(0, osp.join(ROOT, "tools"))
    from benchmark_train_step import published_architectures

    model_cfg = cfg.model
    model_cfg.pretrained_pth = None
    quantized = "quantization_config" in model_cfg.llm
    model_cfg.llm.pop("quantization_config", None)  # 4-bit needs a GPU; counted as NF4 below
    with tempfile.TemporaryDirectory() as folder, published_architectures(model_cfg, "meta", folder):
        model = BUILDER.build(model_cfg)
    counts = dict(trainable=0, frozen=0, frozen_4bit=0)
    for name, p in model.named_parameters():
        if p.requires_grad:
            counts["trainable"] += p.numel()
        elif quantized and name.startswith("llm.") and p.dim() == 2 and "embed" not in name and "lm_head" not in name:
            counts["frozen_4bit"] += p.numel()
        else:
            counts["frozen"] += p.numel()
    counts["parts"] = dict(
        llm=sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" not in n),
        lora=sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" in n),
        clip=sum(p.numel() for p in model.visual_encoder.parameters()),
        convnext=sum(p.numel() for p in model.visual_encoder_aux.parameters()) if model.visual_encoder_aux else 0)
    counts["largest_layer"] = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    llm_config = model.llm.config
    counts.update(hidden=llm_config.hidden_size, intermediate=llm_config.intermediate_size,
                  layers=llm_config.num_hidden_layers, vocab=llm_config.vocab_size,
                  llm_trains=any(p.requires_grad for n, p in model.llm.named_parameters() if "lora_" not in n),
                  lora=bool(getattr(model, "use_llm_lora", False)), fused_qkv=llm_config.model_type == "phi3",
                  lora_rank=int(model_cfg.get("llm_lora", {}).get("r", 0)) if model_cfg.get("llm_lora") else 0,
                  checkpointing=bool(getattr(model.llm, "is_gradient_checkpointing", False)))
    return counts


def workload_from_config(path: str, tokens: Optional[int] = None) -> Workload:
    from mmengine.config import Config

    from mg_llava.token_budget import config_budget

    cfg = Config.fromfile(path)
    budget = config_budget(cfg)
    counts = count_parts(Config.fromfile(path))
    video = budget.num_frames > 0
    # the worst case of a video config is its video sample; of the others, their longest image sample
    images = budget.num_frames if video else 1
    zero = cfg.get("strategy", {}).get("config", {}).get("zero_optimization", {}).get("stage", 2)
    return Workload(name=osp.relpath(path, ROOT), trainable=counts["trainable"], frozen=counts["frozen"],
                    frozen_4bit=counts["frozen_4bit"], largest_layer=counts["largest_layer"],
                    hidden=counts["hidden"], intermediate=counts["intermediate"], layers=counts["layers"],
                    vocab=counts["vocab"], llm_trains=counts["llm_trains"], lora=counts["lora"],
                    checkpointing=counts["checkpointing"], zero=zero, batch=cfg.batch_size,
                    tokens=tokens or budget.longest, images=images,
                    encoder_chunk=cfg.model.get("encoder_chunk_size"), accumulation=cfg.get("accumulative_counts", 1),
                    lora_rank=counts["lora_rank"], fused_qkv=counts["fused_qkv"], num_gpus=cfg.get("num_gpus", 8),
                    parts=counts["parts"])


def llava15_7b_stage2(batch: int = 16, checkpointing: bool = True) -> Workload:
    """The published LLaVA-1.5-7B stage 2 (scripts/v1_5/finetune.sh): Vicuna-7B + CLIP ViT-L/14-336 + MLP projector,
    ZeRO-3, bf16, per-device batch 16 on 8 x A100 80 GB, gradient checkpointing, model_max_length 2048."""
    return Workload(name="LLaVA-1.5-7B stage 2 (published: fits 8 x 80 GB)", trainable=6_738_415_616 + 20_979_712,
                    frozen=303_507_456, frozen_4bit=0, largest_layer=32000 * 4096, hidden=4096, intermediate=11008,
                    layers=32, vocab=32000, llm_trains=True, lora=False, checkpointing=checkpointing, zero=3,
                    batch=batch, tokens=2048, images=1, encoder_chunk=None)


def baseline_rss() -> int:
    """Resident bytes of a process that has imported what a training process imports, before any model."""
    import subprocess

    code = ("import resource, torch, transformers, deepspeed, xtuner.model, mmengine.runner, mg_llava, open_clip; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(run.stdout.strip().splitlines()[-1])


def host_build_peak(w: Workload) -> float:
    """Bytes a training process holds on the host while it builds the model, before DeepSpeed casts it to bf16 and
    moves it to the device: the encoders and the trainable modules in fp32, the LLM in bf16 (its config's dtype) -
    except under LoRA, where XTuner calls peft's ``prepare_model_for_kbit_training``, which casts every bf16 weight of
    a non-quantised LLM to fp32 (4 bytes per LLM parameter, per process on the node)."""
    llm = w.parts.get("llm", 0)
    encoders = w.parts.get("clip", 0) + w.parts.get("convnext", 0)
    llm_bytes = 4 if w.lora and not w.frozen_4bit else (0.5 if w.frozen_4bit else 2)
    lora = w.parts.get("lora", 0) if w.lora else 0
    others = w.trainable + w.frozen + w.frozen_4bit - llm - encoders - lora  # fusion, projectors
    return float(llm_bytes * llm + 4 * encoders + 4 * (lora + max(others, 0)))


def rehearsal_check(record_path: str) -> List[dict]:
    """Predicted vs measured peak of each training phase of a ``tools/rehearse.py`` record: the phase's config
    planned for one process (batch 1, its longest sequence, the rehearsal's layer count and parameters), with the
    import baseline of a CPU process in place of the CUDA runtime overhead, or its :func:`host_build_peak` if that is
    higher (on the CPU the model is built where it trains), against the trainer's measured peak resident set."""
    with open(record_path) as f:
        record = json.load(f)
    prepared, baseline = record["prepared"], baseline_rss()
    rows = []
    for phase in record["phases"]:
        key = dict(stage1="stage1_config", stage2_lora="stage2_config").get(phase["phase"])
        if key is None:
            continue
        w = workload_from_config(prepared[key], phase["longest_sequence"]["length"])
        layers = prepared["llm"]["layers"]
        # the ConvNeXt the run built (``--layers`` cuts its blocks; the config's name is the published one)
        convnext = prepared.get("convnext", {}).get("trunk_parameters", w.parts["convnext"])
        frozen = w.frozen + prepared["clip"]["parameters"] - w.parts["clip"] + convnext - w.parts["convnext"]
        trainable = w.trainable
        if w.llm_trains:
            trainable += prepared["llm"]["parameters"] - w.parts["llm"]
        else:
            frozen += prepared["llm"]["parameters"] - w.parts["llm"]
        trainable += round(w.parts["lora"] * (layers / w.layers - 1))  # LoRA adapters scale with the layers
        parts = dict(w.parts, llm=prepared["llm"]["parameters"], clip=prepared["clip"]["parameters"], convnext=convnext,
                     lora=round(w.parts["lora"] * layers / w.layers))
        w = w.changed(layers=layers, frozen=frozen, trainable=trainable, batch=1, accumulation=1, parts=parts)
        training, build = peak(w, 1)["peak"] - RUNTIME_OVERHEAD + baseline, host_build_peak(w) + baseline
        predicted = max(training, build)
        measured = phase["largest_process_rss_gb"] * 1e9
        rows.append(dict(phase=phase["phase"], predicted_gb=predicted / 1e9, measured_gb=measured / 1e9,
                         error=predicted / measured - 1, baseline_gb=baseline / 1e9, tokens=w.tokens,
                         training_gb=training / 1e9, build_gb=build / 1e9,
                         parts_gb={k: v / 1e9 for k, v in peak(w, 1).items()}))
    return rows


def real_configs() -> List[str]:
    paths = sorted(glob(osp.join(ROOT, "xtuner_configs", "**", "*.py"), recursive=True))
    return [p for p in paths if "/_base_/" not in p and "/tiny/" not in p]


def describe(w: Workload) -> dict:
    return dict(dataclasses.asdict(w), targets=fits_table(w))


def print_table(plans: List[dict], markdown: bool = False):
    head = ["config", "ZeRO", "batch", "ckpt", "tokens", "trainable"] + [f"{g}x{m} GB" for g, m in TARGETS] + [
        "shipped GPUs x 80 GB"]
    rows = []
    for plan in plans:
        cells = [osp.basename(plan["name"]).replace(".py", ""), str(plan["zero"]), str(plan["batch"]),
                 "yes" if plan["checkpointing"] else "no", str(plan["tokens"]), f"{plan['trainable'] / 1e9:.3g}B"]
        targets = {(t["gpus"], t["gpu_gb"]): t for t in plan["targets"]}
        shipped = targets[plan["num_gpus"], 80]
        for target in [targets[t] for t in TARGETS]:
            cells.append(f"{target['peak_gb']:.1f} " + ("fits" if target["fits"] else f"NO: {target['change']}"))
        cells.append(f"{shipped['gpus']}x: {shipped['peak_gb']:.1f} " + ("fits" if shipped["fits"] else "NO"))
        rows.append(cells)
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for cells in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*")
    parser.add_argument("--all", action="store_true", help="every shipped real-backbone config")
    parser.add_argument("--gpus", type=int, help="one target: this many GPUs ...")
    parser.add_argument("--gpu-mem", type=float, help="... of this many GB each")
    parser.add_argument("--tokens", type=int, help="LLM tokens per sample (default: the longest admissible)")
    parser.add_argument("--json", help="write the plans here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--rehearsal", metavar="RECORD", help="predicted vs measured for a tools/rehearse.py record")
    args = parser.parse_args(argv)
    if args.rehearsal:
        rows = rehearsal_check(args.rehearsal)
        for row in rows:
            print(f"{row['phase']:<12} predicted {row['predicted_gb']:.2f} GB (training {row['training_gb']:.2f}, "
                  f"model build {row['build_gb']:.2f}), measured {row['measured_gb']:.2f} GB ({100 * row['error']:+.1f} %), "
                  f"{row['tokens']} tokens, import baseline {row['baseline_gb']:.2f} GB")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)
        return rows
    global TARGETS
    if args.gpus or args.gpu_mem:
        TARGETS = [(args.gpus or 8, args.gpu_mem or 80)]
    paths = real_configs() if args.all else args.configs
    if not paths:
        parser.error("name a config or give --all")
    plans = [describe(llava15_7b_stage2())] if args.all else []
    for path in paths:
        plans.append(describe(workload_from_config(path, args.tokens)))
        print(f"planned {osp.relpath(path, ROOT)}", file=sys.stderr)
    print_table(plans, args.markdown)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plans, f, indent=2)
    return plans


if __name__ == "__main__":
    main()
