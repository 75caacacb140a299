"""Time, peak memory and agreement of the object branch's two implementations, side by side in one run.

    python tools/benchmark_object_features.py [--boxes 100] [--image-size 768] [--images 1] [--json out.json]

Random stage maps shaped like ConvNeXt-L's at the given input (192@S/4, 384@S/8, 768@S/16, 1536@S/32) and random
boxes (some past the border), fed to ``MultiScaleRoIFeatures`` with ``impl="separable"`` (the default) and
``impl="roi_align"`` (mmcv's op on the upsampled map, in chunks: the reference). Time is the best of ``--repeats``
calls after a warm-up (one call for the slow reference). Peak extra memory is what one call allocates beyond its
inputs: on CPU read from the profiler's allocation events (every tensor allocation and free, in order, intra-op
temporaries included), on CUDA from ``torch.cuda.max_memory_allocated``. Agreement is the largest difference from
the reference relative to the reference's largest magnitude. On a shared CPU the times are noisy: quote ratios from
one run.
"""
import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from mg_llava.model import MultiScaleRoIFeatures

MB = 1e6
IMPLS = ("roi_align", "separable")  # the reference first
TARGETS = dict(speedup=20.0, max_rel_err=1e-5, peak_extra_mb_per_image=32.0)  # issue 13, for the separable one


def random_inputs(images, image_size, channels, num_boxes, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    side = image_size // 4
    maps = [torch.randn(images, c, side >> k, side >> k, generator=generator).to(device, dtype)
            for k, c in enumerate(channels)]
    boxes = []
    for _ in range(images):
        corners = torch.rand(num_boxes, 2, generator=generator) * (image_size - 16) - 8
        sides = 8 + torch.rand(num_boxes, 2, generator=generator) * (image_size - corners)
        boxes.append(torch.cat([corners, corners + sides], dim=1).to(device))
    return maps, boxes


def cpu_peak_bytes(fn):
    """Peak of (bytes allocated - bytes freed) while ``fn`` runs, from the profiler's allocation events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return result, peak


def cuda_peak_bytes(fn):
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return result, torch.cuda.max_memory_allocated() - start


def timed(fn, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=768)
    parser.add_argument("--channels", type=int, nargs=4, default=[192, 384, 768, 1536])
    parser.add_argument("--boxes", type=int, default=100, help="per image")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--output-size", type=int, default=56)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the separable one (best is kept)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    maps, boxes = random_inputs(args.images, args.image_size, args.channels, args.boxes, getattr(torch, args.dtype),
                                args.device)
    size = (args.image_size, args.image_size)
    measure = cuda_peak_bytes if args.device.startswith("cuda") else cpu_peak_bytes
    results, outputs = {}, {}
    repeats = dict(roi_align=1, separable=args.repeats)
    with tqdm(total=sum(repeats.values()) + 2 * len(IMPLS), desc="object branch", unit="call") as bar:
        for impl in IMPLS:
            module = MultiScaleRoIFeatures(args.channels, args.output_size, impl=impl)
            module(maps, [b[:2] for b in boxes], size)  # warm-up: loads the op library, first-call allocations
            bar.update()
            seconds = []
            for _ in range(repeats[impl]):
                outputs[impl], elapsed = timed(lambda: module(maps, boxes, size), args.device)
                seconds.append(elapsed)
                bar.update()
            _, peak = measure(lambda: module(maps, boxes, size))
            bar.update()
            results[impl] = dict(seconds=min(seconds), all_seconds=seconds,
                                 peak_extra_mb_per_image=peak / MB / args.images)
    reference = torch.cat(outputs["roi_align"])
    for impl in IMPLS:
        got = torch.cat(outputs[impl])
        results[impl]["max_rel_err"] = ((got - reference).abs().max() / reference.abs().max()).item()
        results[impl]["speedup"] = results["roi_align"]["seconds"] / results[impl]["seconds"]

    separable = results["separable"]
    met = dict(speedup=separable["speedup"] >= TARGETS["speedup"],
               max_rel_err=separable["max_rel_err"] <= TARGETS["max_rel_err"],
               peak_extra_mb_per_image=separable["peak_extra_mb_per_image"] <= TARGETS["peak_extra_mb_per_image"])
    side, total = args.image_size // 4, sum(args.channels)
    summary = dict(
        device=args.device, threads=torch.get_num_threads(), dtype=args.dtype, image_size=args.image_size,
        channels=args.channels, images=args.images, boxes_per_image=args.boxes, output_size=args.output_size,
        results=results, targets=TARGETS, targets_met=met,
        naive_multi_scale_map_mb=4 * total * side * side / MB,
        naive_roi_output_mb=4 * args.boxes * total * args.output_size ** 2 / MB,
    )
    print(f"\n{args.images} image(s) at {args.image_size} px, channels {args.channels}, {args.boxes} boxes each, "
          f"P = {args.output_size}, {args.dtype} on {args.device} ({torch.get_num_threads()} threads)")
    print(f"{'impl':<12}{'seconds':>10}{'speed-up':>10}{'peak extra MB/image':>22}{'max rel. err':>15}")
    for impl in IMPLS:
        r = results[impl]
        print(f"{impl:<12}{r['seconds']:>10.3f}{r['speedup']:>9.1f}x{r['peak_extra_mb_per_image']:>22.1f}"
              f"{r['max_rel_err']:>15.2g}")
    print("targets for separable: " + ", ".join(f"{k} {'>=' if k == 'speedup' else '<='} {TARGETS[k]:g}: "
                                                f"{'met' if ok else 'NOT met'}" for k, ok in met.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
