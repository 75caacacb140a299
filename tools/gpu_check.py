"""Prove a CUDA machine in one command: every CUDA path against its CPU reference, then the real training step's MFU.

    python tools/gpu_check.py [--json gpu_check.json] [--skip-benchmark] [--device cuda:0]

Checks, each on the GPU against the same computation on the CPU (float32 reference), with both timings:

1. ``object_branch``: the separable RoIAlign means (``mg_llava/model/separable_roi_mean.py``) of one 768 px image's
   ConvNeXt-L stage maps (192/384/768/1536 channels at 192/96/48/24) with 100 boxes, the maps in bf16 as in training.
2. ``mmcv_roi_align``: mmcv's RoIAlign CUDA op through ``impl="roi_align"`` on the same input; skipped, with the
   reason, when mmcv has no CUDA build (``mmcv.ops`` imports but the op is CPU-only, or mmcv is missing).
3. ``mmcv_deformable_attention``: mmcv's ``MultiScaleDeformableAttnFunction`` CUDA kernel (MMFuser) against
   ``multi_scale_deformable_attn_pytorch`` at MMFuser's shapes (4 levels of 24 x 24, 16 heads, 4 points); skipped
   likewise.
4. ``device_resize``: the padded-square bicubic resize the data preprocessor runs on the device
   (``square_view``), bit for bit against Pillow on the CPU, for photo-sized images.
5. ``tiny_train_step``: the tiny config's model and a synthetic batch (``tools/benchmark_train_step.py``'s), built
   once on the CPU, trained two steps in bf16 on the GPU and in fp32 on the CPU: the first loss (same weights, same
   batch) within 3 %, every loss finite.

Then ``tools/benchmark_train_step.py`` at Vicuna-7B's real stage-1 and stage-2 shapes (random weights, published
architectures; per-device batch 8 and 4, so one 80 GB GPU holds them without DeepSpeed) -> step time, tokens/s,
peak memory, MFU. Table + JSON. Works with any PyTorch >= 2.4 (nothing here needs our pin). Without a CUDA device it
prints one line and exits 1; a failed check exits 2.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVNEXT_L_768 = [(192, 192), (384, 96), (768, 48), (1536, 24)]  # (channels, side) of the four stages at 768 px
HIGH_RES = 768
PHOTO_SIZES = [(640, 480), (480, 640), (500, 375), (612, 612), (1024, 768)]  # (W, H)
TINY_CONFIG = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_finetune.py")
VICUNA_7B = osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_{}.py")
BENCHMARK_BATCH = dict(pretrain=8, finetune=4)
LOSS_TOLERANCE = 0.03


# --------------------------------------------------------------------------------- inputs and CPU references
def object_branch_inputs(seed: int = 0, boxes: int = 100, channels=CONVNEXT_L_768):
    """One image's stage maps [(1, C_k, s_k, s_k)] bf16 and its (boxes, 4) xyxy boxes in 768 px input pixels."""
    generator = torch.Generator().manual_seed(seed)
    maps = [torch.randn(1, c, s, s, generator=generator).to(torch.bfloat16) for c, s in channels]
    corners = torch.rand(boxes, 2, generator=generator) * (HIGH_RES - 64)
    sides = 4 + torch.rand(boxes, 2, generator=generator) * 300
    return maps, [torch.cat([corners, (corners + sides).clamp(max=HIGH_RES)], dim=1)]


def object_branch(maps, boxes, device, impl="separable"):
    """(boxes, sum C_k) float32 on the CPU: the model's object branch on ``device``."""
    from mg_llava.model import MultiScaleRoIFeatures

    branch = MultiScaleRoIFeatures([m.shape[1] for m in maps], output_size=56, impl=impl)
    out = branch([m.to(device) for m in maps], [b.to(device) for b in boxes], (HIGH_RES, HIGH_RES))
    return out[0].float().cpu()


def deformable_inputs(seed: int = 0, images: int = 2, queries: int = 576, heads: int = 16, levels: int = 4,
                      points: int = 4, channels: int = 64, side: int = 24):
    """MMFuser's sampling inputs: value (I, levels*side^2, heads, channels), spatial_shapes (levels, 2), sampling
    locations (I, queries, heads, levels, points, 2) in [0, 1], attention weights (I, queries, heads, levels,
    points) summing to 1 over levels x points."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[side, side]] * levels)
    value = torch.randn(images, levels * side * side, heads, channels, generator=generator)
    locations = torch.rand(images, queries, heads, levels, points, 2, generator=generator) * 1.1 - 0.05
    weights = torch.rand(images, queries, heads, levels * points, generator=generator).softmax(-1)
    return value, shapes, locations, weights.view(images, queries, heads, levels, points)


def deformable_reference(value, shapes, locations, weights):
    """mmcv's pure-PyTorch deformable sampling (the CPU path of ``deformable_attention``): (I, queries, heads*C)."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    return multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)


def deformable_cuda(value, shapes, locations, weights, device):
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    start = torch.cat([shapes.new_zeros(1), shapes.prod(-1).cumsum(0)[:-1]])
    out = MultiScaleDeformableAttnFunction.apply(value.to(device), shapes.to(device), start.to(device),
                                                 locations.to(device), weights.to(device), value.shape[0])
    return out.cpu()


def photo(seed: int, size):
    """A uint8 (3, H, W) image with photo-like structure (smooth gradients + noise + edges)."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) % 256)])
    noise = rng.integers(-40, 41, base.shape)
    blocks = ((x // 37 + y // 23) % 2) * 60
    return torch.from_numpy(np.clip(base + noise + blocks, 0, 255).astype(np.uint8))


def pil_square_view(image: torch.Tensor, fill, side: int = HIGH_RES) -> torch.Tensor:
    """The CPU reference: Pillow pads the image to a square with ``fill`` at the centre offset and resizes it
    (bicubic), as :meth:`mg_llava.dataset.ImageViews.pixels` does. uint8 (3, H, W) -> uint8 (3, side, side)."""
    from PIL import Image

    height, width = image.shape[1:]
    square = max(width, height)
    canvas = Image.new("RGB", (square, square), tuple(fill))
    canvas.paste(Image.fromarray(image.permute(1, 2, 0).numpy()), ((square - width) // 2, (square - height) // 2))
    resized = canvas.resize((side, side), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized)).permute(2, 0, 1).contiguous()


def device_square_view(image: torch.Tensor, fill, device, side: int = HIGH_RES) -> torch.Tensor:
    from mg_llava.dataset.image_views import square_view

    return square_view(image.to(device), tuple(fill), side).cpu()


# ------------------------------------------------------------------------------------------------- machinery
def timed(fn, device, repeats: int = 3):
    """(result of the first call, median seconds of ``repeats`` calls after it), CUDA synchronised."""
    result = fn()
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def compare(name, reference, candidate, rtol, atol, cpu_s, gpu_s, exact=False) -> dict:
    diff = (reference.double() - candidate.double()).abs()
    if exact:
        passed = bool(torch.equal(reference, candidate))
    else:
        passed = bool((diff <= atol + rtol * reference.double().abs()).all())
    return dict(check=name, status="pass" if passed else "FAIL", max_abs_diff=float(diff.max()) if diff.numel() else 0.0,
                tolerance="bit-exact" if exact else f"rtol {rtol:g}, atol {atol:g}", cpu_ms=1e3 * cpu_s,
                gpu_ms=1e3 * gpu_s)


def skipped(name, reason) -> dict:
    return dict(check=name, status="skip", reason=reason)


def mmcv_cuda_reason():
    """None when mmcv's compiled ops run on CUDA; else why not (mmcv missing, no compiled ops, a CPU-only build)."""
    try:
        from mmcv.ops import roi_align
    except Exception as err:  # ImportError, or mmcv's own error for a missing compiled extension
        return f"mmcv.ops does not import: {type(err).__name__}: {err}"
    try:
        roi_align(torch.zeros(1, 1, 4, 4, device="cuda"), torch.tensor([[0.0, 0, 0, 2, 2]], device="cuda"), 2)
    except (RuntimeError, NotImplementedError) as err:
        return f"mmcv's compiled ops have no CUDA kernels (a CPU-only build): {str(err).splitlines()[0]}"
    return None


def check_object_branch(device):
    maps, boxes = object_branch_inputs()
    reference, cpu_s = timed(lambda: object_branch(maps, boxes, torch.device("cpu")), torch.device("cpu"), 1)
    result, gpu_s = timed(lambda: object_branch(maps, boxes, device), device)
    return compare("object_branch (separable, 100 boxes, 768 px)", reference, result, 1e-3, 1e-3, cpu_s, gpu_s)


def check_mmcv_roi_align(device, reason):
    if reason:
        return skipped("mmcv_roi_align", reason)
    maps, boxes = object_branch_inputs(boxes=20)
    reference, cpu_s = timed(lambda: object_branch(maps, boxes, torch.device("cpu")), torch.device("cpu"), 1)
    result, gpu_s = timed(lambda: object_branch(maps, boxes, device, impl="roi_align"), device)
    return compare("mmcv_roi_align (CUDA op vs separable on CPU, 20 boxes)", reference, result, 1e-3, 1e-3, cpu_s,
                   gpu_s)


def check_deformable(device, reason):
    if reason:
        return skipped("mmcv_deformable_attention", reason)
    inputs = deformable_inputs()
    reference, cpu_s = timed(lambda: deformable_reference(*inputs), torch.device("cpu"), 1)
    result, gpu_s = timed(lambda: deformable_cuda(*inputs, device), device)
    return compare("mmcv_deformable_attention (MMFuser shapes)", reference, result, 1e-4, 1e-4, cpu_s, gpu_s)


def check_resize(device):
    fill = (122, 116, 104)  # the CLIP mean colour
    images = [photo(i, size) for i, size in enumerate(PHOTO_SIZES)]
    reference, cpu_s = timed(lambda: torch.stack([pil_square_view(im, fill) for im in images]), torch.device("cpu"), 1)
    result, gpu_s = timed(lambda: torch.stack([device_square_view(im, fill, device) for im in images]), device)
    return compare(f"device_resize ({len(images)} photos -> 768, vs Pillow)", reference, result, 0, 0, cpu_s, gpu_s,
                   exact=True)


def tiny_step_losses(workdir: str, device, dtype, steps: int = 2, seed: int = 0) -> dict:
    """The tiny finetune config's model (built on the CPU in fp32 from ``workdir``'s tiny assets, so every device
    starts from the same weights), moved to ``device`` in ``dtype``, trained ``steps`` steps on one synthetic batch
    of ``tools/benchmark_train_step.py``: {"losses": [...], "step_seconds": mean}."""
    import copy

    from mmengine.config import Config

    sys.path.insert(0, osp.join(ROOT, "tools"))
    from benchmark_train_step import build_model, synthetic_batch, train_step

    cwd = os.getcwd()
    os.chdir(workdir)  # the config's work_dirs/tiny_assets paths
    try:
        cfg = Config.fromfile(TINY_CONFIG)
        torch.manual_seed(seed)
        model = build_model(cfg, torch.device("cpu"), torch.float32)
    finally:
        os.chdir(cwd)
    device = torch.device(device)
    model = copy.deepcopy(model).to(device, dtype)
    patch = model.visual_encoder.config.patch_size
    sizes = dict(batch_size=2, high_res=cfg.high_res, low_res=cfg.low_res, max_length=cfg.max_length,
                 max_boxes=cfg.max_boxes, image_tokens=(cfg.low_res // patch) ** 2, text_median=64)
    vocab = model.llm.get_input_embeddings().num_embeddings
    data, _ = synthetic_batch(np.random.default_rng(seed), sizes, vocab, "uint8")
    params = [p for p in model.parameters() if p.requires_grad]
    optim_cfg = dict(cfg.optim_wrapper.optimizer)
    optimizer = optim_cfg.pop("type")(params, **optim_cfg)
    results = [train_step(model, optimizer, params, data, 1.0, device) for _ in range(steps)]
    return dict(losses=[loss for loss, _ in results], step_seconds=float(np.mean([t for _, t in results])))


def tiny_workdir(root: str) -> str:
    """A working directory with ``work_dirs/tiny_assets/models`` built by ``mg_llava.testing.tiny_models``."""
    from mg_llava.testing.tiny_models import build_all

    build_all(osp.join(root, "work_dirs", "tiny_assets", "models"))
    return root


def compare_tiny_steps(reference: dict, candidate: dict, name: str) -> dict:
    first_ref, first = reference["losses"][0], candidate["losses"][0]
    passed = all(np.isfinite(candidate["losses"])) and abs(first - first_ref) <= LOSS_TOLERANCE * abs(first_ref)
    return dict(check=name, status="pass" if passed else "FAIL", max_abs_diff=abs(first - first_ref),
                tolerance=f"rel {LOSS_TOLERANCE:g}, finite", cpu_ms=1e3 * reference["step_seconds"],
                gpu_ms=1e3 * candidate["step_seconds"], losses_gpu=candidate["losses"], losses_cpu=reference["losses"])


def check_tiny_step(device):
    with tempfile.TemporaryDirectory() as root:
        workdir = tiny_workdir(root)
        cpu = tiny_step_losses(workdir, "cpu", torch.float32)
        gpu = tiny_step_losses(workdir, device, torch.bfloat16)
    return compare_tiny_steps(cpu, gpu, "tiny_train_step (bf16 GPU vs fp32 CPU, same weights, first loss)")


def benchmark_7b(stage: str, device, timeout: int) -> dict:
    """``tools/benchmark_train_step.py`` at Vicuna-7B's shapes in its own process (the 7B model is freed with it)."""
    with tempfile.TemporaryDirectory() as folder:
        out = osp.join(folder, "step.json")
        command = [sys.executable, osp.join(ROOT, "tools", "benchmark_train_step.py"), VICUNA_7B.format(stage),
                   "--steps", "4", "--warmup", "2", "--profile-steps", "1", "--batch-size",
                   str(BENCHMARK_BATCH[stage]), "--device", str(device), "--json", out]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return dict(stage=stage, status="FAIL", reason=f"timed out after {timeout} s")
        if run.returncode != 0:
            return dict(stage=stage, status="FAIL", reason=run.stderr.strip().splitlines()[-1:])
        with open(out) as f:
            result = json.load(f)
    return dict(stage=stage, status="pass", batch=result["batch_size"], step_s=result["step_seconds"],
                tokens_per_s=result["tokens_per_second"], peak_gb=result["peak_memory_mb"] / 1e3,
                mfu=result["mfu"], vision_share=result["vision_side_share"])


def print_report(report: dict):
    print(f"\n{report['device']} | torch {report['torch']} (CUDA {report['cuda']}) | mmcv: {report['mmcv']}")
    print(f"  {'check':<58}{'status':>7}{'max |diff|':>12}{'CPU ms':>10}{'GPU ms':>10}")
    for c in report["checks"]:
        if c["status"] == "skip":
            print(f"  {c['check']:<58}{'skip':>7}  {c['reason']}")
            continue
        print(f"  {c['check']:<58}{c['status']:>7}{c['max_abs_diff']:>12.3g}{c['cpu_ms']:>10.1f}{c['gpu_ms']:>10.2f}")
    for b in report.get("benchmarks", []):
        if b["status"] != "pass":
            print(f"  Vicuna-7B {b['stage']}: FAIL {b['reason']}")
            continue
        mfu = f"{100 * b['mfu']:.1f} %" if b["mfu"] is not None else "n/a"
        print(f"  Vicuna-7B {b['stage']:<9} batch {b['batch']}: {b['step_s']:.3f} s/step, {b['tokens_per_s']:.0f} "
              f"tokens/s, peak {b['peak_gb']:.1f} GB, MFU {mfu}, vision side {100 * b['vision_share']:.1f} %")
    print(f"  total {report['seconds']:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--skip-benchmark", action="store_true", help="only the CUDA-vs-CPU checks")
    parser.add_argument("--benchmark-timeout", type=int, default=150, help="seconds per Vicuna-7B benchmark")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
              f"nothing to check", file=sys.stderr)
        return 1
    start = time.perf_counter()
    device = torch.device(args.device)
    reason = mmcv_cuda_reason()
    try:
        import mmcv
        mmcv_version = f"{mmcv.__version__}, CUDA ops {'yes' if reason is None else 'no'}"
    except ImportError:
        mmcv_version = "not installed"
    checks = [check_object_branch(device), check_mmcv_roi_align(device, reason), check_deformable(device, reason),
              check_resize(device), check_tiny_step(device)]
    report = dict(device=torch.cuda.get_device_name(device), torch=torch.__version__, cuda=torch.version.cuda,
                  mmcv=mmcv_version, checks=checks)
    if not args.skip_benchmark:
        report["benchmarks"] = [benchmark_7b(stage, device, args.benchmark_timeout)
                                for stage in ("pretrain", "finetune")]
    report["seconds"] = time.perf_counter() - start
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    failed = [c for c in checks + report.get("benchmarks", []) if c["status"] == "FAIL"]
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
