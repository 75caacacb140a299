"""Peak memory, time and exactness of the object branch (MultiScaleRoIFeatures) at the real size.

    python tools/benchmark_object_features.py [--boxes 100] [--image-size 768] [--json out.json]

Random stage maps shaped like ConvNeXt-L's at the given input (192@S/4, 384@S/8, 768@S/16, 1536@S/32) and random
boxes, one image. Peak extra memory is what the call allocates beyond its inputs: on CPU read from the profiler's
allocation events (every tensor allocation and free, in order, intra-op temporaries included), on CUDA from
``torch.cuda.max_memory_allocated``. ``--check`` compares with the plain formula (the whole multi-scale map, then
RoIAlign and the mean box by box).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mg_llava.model import MultiScaleRoIFeatures

MIB = 2 ** 20


def random_inputs(image_size, channels, num_boxes, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    side = image_size // 4
    maps = [torch.randn(1, c, side >> k, side >> k, generator=generator).to(device, dtype)
            for k, c in enumerate(channels)]
    corners = torch.rand(num_boxes, 2, generator=generator) * (image_size - 16)
    sides = 8 + torch.rand(num_boxes, 2, generator=generator) * (image_size - 8 - corners)
    return maps, torch.cat([corners, corners + sides], dim=1).to(device)


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


@torch.no_grad()
def plain_formula(maps, boxes, image_size, output_size):
    from mmcv.ops import roi_align

    size = maps[0].shape[-2:]
    multi_scale = torch.cat([maps[0].float()] + [
        F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False) for m in maps[1:]], dim=1)
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    return torch.cat([roi_align(multi_scale, rois[i:i + 1], output_size, size[0] / image_size, 0, "avg", False)
                      .mean(dim=(2, 3)) for i in range(len(boxes))])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=768)
    parser.add_argument("--channels", type=int, nargs=4, default=[192, 384, 768, 1536])
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--output-size", type=int, default=56)
    parser.add_argument("--channel-chunk", type=int, default=128)
    parser.add_argument("--box-chunk", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--check", action="store_true", help="compare with the plain formula (slow on CPU)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    maps, boxes = random_inputs(args.image_size, args.channels, args.boxes, getattr(torch, args.dtype),
                                args.device)
    module = MultiScaleRoIFeatures(args.channels, args.output_size, channel_chunk=args.channel_chunk,
                                   box_chunk=args.box_chunk)
    size = (args.image_size, args.image_size)
    measure = cuda_peak_bytes if args.device.startswith("cuda") else cpu_peak_bytes
    module(maps, [boxes[:2]], size)  # warm-up: loads the op library
    start = time.perf_counter()
    (features,), peak = measure(lambda: module(maps, [boxes], size))
    seconds = time.perf_counter() - start

    side, total = args.image_size // 4, sum(args.channels)
    result = dict(
        device=args.device, dtype=args.dtype, image_size=args.image_size, channels=args.channels, boxes=args.boxes,
        output_size=args.output_size, channel_chunk=args.channel_chunk, box_chunk=args.box_chunk,
        peak_extra_mib=peak / MIB, seconds=seconds,
        bound_mib=4 * args.channel_chunk * (side * side + args.box_chunk * args.output_size ** 2) / MIB,
        naive_multi_scale_map_mib=4 * total * side * side / MIB,
        naive_roi_output_mib=4 * args.boxes * total * args.output_size ** 2 / MIB,
    )
    if args.check:
        expected = plain_formula(maps, boxes, args.image_size, args.output_size)
        result["max_rel_err"] = ((features - expected).abs().max() / expected.abs().max()).item()
    print(f"{'quantity':<34}{'value':>12}")
    for key, value in result.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<34}{text:>12}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
