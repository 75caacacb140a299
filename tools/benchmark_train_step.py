"""What one training step of a config costs: time, samples/s, tokens/s, peak memory, each part's share, and MFU.

    python tools/benchmark_train_step.py CONFIG [--steps 5] [--warmup 2] [--device cuda] [--json out.json]

The model is built from the config as ``xtuner train`` builds it, except that parts named by a hub id are built
from their published architecture (``mg_llava/model/reference_configs.py``) with random weights, directly on the
device: nothing is downloaded, and stage 2's ``pretrained_pth`` is dropped. Parts in local folders (the tiny
configs' assets) load as usual. Batches are synthetic at the config's sizes: ``batch_size`` samples, each with one
image, 0 to ``max_boxes`` boxes, and a text length drawn from a log-normal mix (median ``--text-median``, by default
96 tokens in stage 1 and 256 in stage 2, clipped to ``max_length``; an assumption, not a measurement of the
datasets), so each sample has text + T image + N_i box tokens. The image comes in the form the config's loader hands
over, on the CPU: a decoded photo-sized uint8 image (``resize_on_device``, the GPU recipes; sides drawn from
PHOTO_SIZES) or the uint8 high-res view; the model's data preprocessor (the copy to the device, pad and resize,
normalisation, the low-res view) is part of the step, as in ``xtuner train``.

A step is forward (loss), backward, gradient clipping and the config's optimizer on the trainable parameters, on
one device without DeepSpeed: ZeRO's sharding and communication are not in the figures. On CUDA the model runs in
bf16 (as the configs' DeepSpeed bf16 does), on CPU in fp32. The shares of the parts come from separate instrumented
steps (timers around each part's forward, synchronised on CUDA) so that the timed steps run without them; the
backward pass is one part (mostly the LLM's). MFU = model FLOPs / step time / the device's dense bf16 peak (known
GPUs, or ``--peak-tflops``): the forward MACs of each part are counted on the step's own batch with
the counter of ``mg_llava/benchmarking.py`` (as ``tools/flops_report.py``), and a part's training FLOPs are 2 x MACs x 1 for the frozen encoders and the
object branch, x 2 for a frozen LLM (the backward still runs through it to reach the projectors), x 3 for parts whose
weights train; activation-checkpointing recomputation is not counted (MFU, not HFU).
"""
import argparse
import json
import os.path as osp
import resource
import time

import numpy as np
import torch
from tqdm import tqdm

from mg_llava.benchmarking import forward_macs_by_module, published_architectures

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets), matched against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1)]
TEXT_MEDIAN = dict(pretrain=96, finetune=256)
TEXT_SIGMA = 0.7
# part -> the model's attributes it times (a forward hook on each)
PARTS = dict(clip=("visual_encoder",), convnext=("visual_encoder_aux",), fusion=("fuse_module",),
             object_branch=("object_features",), projectors=("projector", "bbox_projector"), llm_forward=("llm",))
VISION_PARTS = ("clip", "convnext", "fusion", "object_branch", "projectors")
PHOTO_SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (612, 612), (1024, 768)]  # (W, H), COCO-like


def build_model(cfg, device, dtype):
    import tempfile

    from xtuner.registry import BUILDER

    model_cfg = cfg.model
    model_cfg.pretrained_pth = None
    with tempfile.TemporaryDirectory() as folder, published_architectures(model_cfg, device, folder):
        model = BUILDER.build(model_cfg)
    return model.to(device, dtype).train()


def text_lengths(rng, count, median, max_length):
    lengths = rng.lognormal(np.log(median), TEXT_SIGMA, count).round().astype(int)
    return np.clip(lengths, 8, max_length)


def random_boxes(rng, count, size):
    corners = rng.uniform(0, size - 8, (count, 2))
    sides = rng.uniform(4, size / 2, (count, 2))
    return torch.tensor(np.concatenate([corners, np.minimum(corners + sides, size)], axis=1), dtype=torch.float32)


def synthetic_batch(rng, sizes, vocab_size, hand_over):
    """A batch as the collate gives it (docs/interfaces.md), on the CPU: one image per sample, at position 1 (after
    BOS), ``hand_over`` ``'decoded'`` (``images``) or ``'uint8'`` (``pixel_values_aux``). The images come from their
    own generator, so both hand-overs get the same texts and boxes from the same seed."""
    from xtuner.utils import IMAGE_TOKEN_INDEX

    batch, high = sizes["batch_size"], sizes["high_res"]
    lengths = text_lengths(rng, batch, sizes["text_median"], sizes["max_length"])
    input_ids = torch.zeros(batch, lengths.max(), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    labels = torch.full_like(input_ids, -100)
    for b, length in enumerate(lengths):
        input_ids[b, :length] = torch.from_numpy(rng.integers(3, vocab_size, length))
        input_ids[b, 1] = IMAGE_TOKEN_INDEX
        attention_mask[b, :length] = True
        answer = length // 3  # the last third is the answer (the prompt and the image are not trained on)
        labels[b, length - answer:length] = input_ids[b, length - answer:length]
    boxes = [random_boxes(rng, int(n), high) for n in rng.integers(0, sizes["max_boxes"] + 1, batch)]
    data = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, boxes=boxes)
    pixels = np.random.default_rng(int(rng.integers(2 ** 31)))
    if hand_over == "decoded":
        shapes = [PHOTO_SIZES[i] for i in pixels.integers(0, len(PHOTO_SIZES), batch)]
        data["images"] = [torch.from_numpy(pixels.integers(0, 256, (3, h, w), dtype=np.uint8)) for w, h in shapes]
    else:
        data["pixel_values_aux"] = torch.from_numpy(pixels.integers(0, 256, (batch, 3, high, high), dtype=np.uint8))
    tokens = int(lengths.sum()) - batch + batch * sizes["image_tokens"] + sum(len(b) for b in boxes)
    return data, tokens


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PartTimers:
    """Seconds spent in the forward of each part (PARTS), via hooks; CUDA is synchronised around each part."""

    def __init__(self, model, device):
        self.device, self.seconds, self.handles, self._start = device, {}, [], {}
        for part, attributes in PARTS.items():
            for attribute in attributes:
                module = getattr(model, attribute, None)
                if module is None:
                    continue
                self.handles.append(module.register_forward_pre_hook(self._starter(attribute)))
                self.handles.append(module.register_forward_hook(self._stopper(part, attribute)))

    def _starter(self, attribute):
        def hook(module, args):
            synchronize(self.device)
            self._start[attribute] = time.perf_counter()
        return hook

    def _stopper(self, part, attribute):
        def hook(module, args, output):
            synchronize(self.device)
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - self._start.pop(attribute)
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def preprocess(model, data):
    """The model's data preprocessor on a collated batch: on the device, views finished."""
    return model.data_preprocessor({"data": data, "data_samples": None}, True)["data"]


def train_step(model, optimizer, params, data, max_norm, device, timings=None):
    """One step; with ``timings`` (a dict), adds the seconds of the data preprocessor, forward, backward and
    optimizer to it."""
    marks = [time.perf_counter()]
    data = preprocess(model, data)
    if timings is not None:
        synchronize(device)
    marks.append(time.perf_counter())
    loss = model(data, None, mode="loss")["loss"]
    if timings is not None:
        synchronize(device)
    marks.append(time.perf_counter())
    loss.backward()
    if timings is not None:
        synchronize(device)
    marks.append(time.perf_counter())
    if max_norm:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    marks.append(time.perf_counter())
    if timings is not None:
        for name, start, stop in zip(("data_preprocessor", "forward", "backward", "optimizer"), marks, marks[1:]):
            timings[name] = timings.get(name, 0.0) + stop - start
    return loss.item(), marks[-1] - marks[0]


def training_macs(model, data):
    """{part: training MACs} of one step on ``data`` (forward MACs x 1, 2 or 3; see the module docstring)."""
    counts = forward_macs_by_module(lambda: model(data, None, mode="loss"))
    root = type(model).__name__
    llm_trains = any(p.requires_grad for p in model.llm.parameters())
    factors = dict(clip=1, convnext=1, object_branch=1, fusion=3, projectors=3,
                   llm_forward=3 if llm_trains and not getattr(model, "use_llm_lora", False) else 2)
    macs = {part: factors[part] * sum(counts.get(f"{root}.{a}", 0) for a in attributes)
            for part, attributes in PARTS.items()}
    macs["other_forward"] = counts.get("Global", 0) - sum(counts.get(f"{root}.{a}", 0)
                                                  for attributes in PARTS.values() for a in attributes)
    return macs


def peak_tflops(device, override):
    if override:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"{name} dense bf16"
    return None, None


def main(argv=None):
    from mmengine.config import Config, DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--profile-steps", type=int, default=2, help="instrumented steps for the shares")
    parser.add_argument("--batch-size", type=int, help="per device (default: the config's batch_size)")
    parser.add_argument("--text-median", type=int, help="median text tokens (default: 96 stage 1, 256 stage 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="auto: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak for MFU (known GPUs: automatic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config settings")
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    stage = "pretrain" if cfg.model.freeze_llm else "finetune"

    model = build_model(cfg, device, dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optim_cfg = dict(cfg.optim_wrapper.optimizer)
    optimizer = optim_cfg.pop("type")(params, **optim_cfg)
    max_norm = cfg.get("max_norm", 0)
    patch = model.visual_encoder.config.patch_size
    sizes = dict(batch_size=args.batch_size or cfg.batch_size, high_res=cfg.high_res, low_res=cfg.low_res,
                 max_length=cfg.max_length, max_boxes=cfg.max_boxes, image_tokens=(cfg.low_res // patch) ** 2,
                 text_median=args.text_median or TEXT_MEDIAN[stage])
    vocab_size = model.llm.get_input_embeddings().num_embeddings
    dataset = cfg.train_dataloader.dataset
    sources = dataset.get("datasets") or [dataset]
    hand_over = "decoded" if dict(dataset, **sources[0]).get("resize_on_device") else "uint8"
    batches = [synthetic_batch(rng, sizes, vocab_size, hand_over) for _ in range(min(args.steps, 4))]

    macs = [training_macs(model, preprocess(model, data)) for data, _ in batches]

    total = args.warmup + args.steps + args.profile_steps
    seconds, losses, timings = [], [], {}
    with tqdm(total=total, desc=osp.basename(args.config), unit="step") as bar:
        for i in range(args.warmup):
            train_step(model, optimizer, params, batches[i % len(batches)][0], max_norm, device)
            bar.update()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(args.steps):
            loss, elapsed = train_step(model, optimizer, params, batches[i % len(batches)][0], max_norm, device)
            seconds.append(elapsed)
            losses.append(loss)
            bar.update()
        timers = PartTimers(model, device)
        profiled = 0.0
        for i in range(args.profile_steps):
            profiled += train_step(model, optimizer, params, batches[i % len(batches)][0], max_norm, device,
                                   timings)[1]
            bar.update()
        timers.remove()

    step = float(np.mean(seconds))
    tokens = float(np.mean([batches[i % len(batches)][1] for i in range(args.steps)]))
    step_macs = {part: float(np.mean([macs[i % len(macs)][part] for i in range(args.steps)])) for part in macs[0]}
    step_flops = 2 * sum(step_macs.values())
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    parts = {"data_preprocessor": timings.get("data_preprocessor", 0.0)}
    parts.update({part: timers.seconds.get(part, 0.0) for part in PARTS})
    parts["other_forward"] = timings.get("forward", 0.0) - sum(parts[part] for part in PARTS)
    parts["backward"], parts["optimizer"] = timings.get("backward", 0.0), timings.get("optimizer", 0.0)
    shares = {part: value / profiled for part, value in parts.items()}
    if device.type == "cuda":
        memory = dict(peak_memory_mb=torch.cuda.max_memory_allocated(device) / 1e6,
                      peak_memory_kind="torch.cuda.max_memory_allocated during the timed steps")
    else:
        memory = dict(peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                      peak_memory_kind="process peak resident set (whole tool)")
    result = dict(
        config=args.config, stage=stage, device=str(device), device_name=torch.cuda.get_device_name(device)
        if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads", dtype=str(dtype).split(".")[-1],
        batch_size=sizes["batch_size"], sizes=sizes, hand_over=hand_over, steps=args.steps, warmup=args.warmup,
        step_seconds=step, all_step_seconds=seconds, samples_per_second=sizes["batch_size"] / step,
        tokens_per_step=tokens, tokens_per_second=tokens / step, losses=losses, **memory,
        trainable_parameters=sum(p.numel() for p in params),
        model_tflops_per_step=step_flops / 1e12, training_macs_per_part=step_macs,
        peak_tflops=peak, peak_source=peak_source, mfu=step_flops / step / (peak * 1e12) if peak else None,
        part_seconds=parts, part_shares=shares, vision_side_share=sum(shares.get(p, 0.0) for p in VISION_PARTS),
    )
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def print_table(r):
    print(f"\n{r['config']} ({r['stage']}) on {r['device_name']}, {r['dtype']}, batch {r['batch_size']}, "
          f"{r['tokens_per_step'] / r['batch_size']:.0f} LLM tokens per sample on average")
    rows = [("step time (s)", f"{r['step_seconds']:.4g}"), ("samples/s", f"{r['samples_per_second']:.4g}"),
            ("tokens/s", f"{r['tokens_per_second']:.4g}"), ("peak memory (MB)", f"{r['peak_memory_mb']:.0f}"),
            ("model TFLOPs per step", f"{r['model_tflops_per_step']:.4g}"),
            ("MFU", f"{100 * r['mfu']:.1f} % of {r['peak_tflops']:g} TFLOP/s" if r["mfu"] is not None
             else "n/a (unknown peak: --peak-tflops)")]
    for name, value in rows:
        print(f"  {name:<24}{value:>28}")
    print(f"  {'part':<24}{'seconds':>12}{'share':>10}{'train GMACs':>14}")
    for part, seconds in r["part_seconds"].items():
        macs = r["training_macs_per_part"].get(part)
        print(f"  {part:<24}{seconds:>12.4f}{100 * r['part_shares'][part]:>9.1f}%"
              f"{macs / 1e9 if macs is not None else float('nan'):>14.2f}")
    print(f"  vision side (encoders, fusion, object branch, projectors; forward): {100 * r['vision_side_share']:.1f} %")


if __name__ == "__main__":
    main()
