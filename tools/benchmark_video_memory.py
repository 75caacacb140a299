"""Peak CPU memory of the video encoder path at the released shapes, for several encoder chunk sizes.

    python tools/benchmark_video_memory.py [--config NAME_OR_PATH] [--frames 8] [--boxes 20]
                                           [--chunk-sizes 1 2 4 8] [--json out.json]

What runs: the vision side of a config's model (default: the Vicuna-7B video QLoRA config), built from the published
architectures with random weights on CPU in fp32 (CLIP ViT-L/14-336, open_clip ConvNeXt-L at 768 px, the Conv-Gate
fusion, the multi-scale RoIAlign object branch and both projectors to the LLM width; nothing is downloaded, the LLM
is not built). One video of ``--frames`` frames with ``--boxes`` random boxes per frame goes through the model's own
``MGLLaVAModel.encode_images`` (the chunked encoder calls of ``video_tokens.run_in_chunks``), with autograd on as in
a training step (the encoders run without it; the fusion, object branch and projectors keep what backward needs).

How it is measured: the process's resident set (Linux ``/proc/self/status``). glibc is told to serve every
allocation over 64 KiB with mmap (``mallopt``), so freed tensors go back to the system and the resident set follows
the live memory. Before each run the high-water mark is reset (``/proc/self/clear_refs``); ``peak`` is the highest
resident set during the run minus the resident set before it (the weights and the input frames are in the
baseline), ``kept`` what is still held after it (the tokens and the activations saved for backward). GPU figures are
not measured here (no GPU): on a GPU the encoders run in bf16, which halves the encoders' share.
"""
import argparse
import ctypes
import gc
import json
import os
import os.path as osp
import sys
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = "mg_llava_vicuna_7b_v15_video_finetune_qlora"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD = 64 * 1024


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def use_mmap_for_large_allocations() -> bool:
    """Make freed large tensors leave the resident set at once (glibc only); False when not possible."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 0))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Set the high-water mark to the current resident set (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def release_free_memory() -> None:
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def load_config(name_or_path: str):
    from mmengine.config import Config

    if osp.isfile(name_or_path):
        return Config.fromfile(name_or_path)
    from list_configs import list_configs

    matches = [p for p in list_configs(name_or_path) if osp.splitext(osp.basename(p))[0] == name_or_path]
    if len(matches) != 1:
        raise SystemExit(f"--config {name_or_path!r}: not a file, and {len(matches)} configs have that name")
    return Config.fromfile(osp.join(ROOT, matches[0]))


class VisionPath(torch.nn.Module):
    """The model's vision side (the attributes ``MGLLaVAModel.encode_images`` reads), without the LLM."""

    def __init__(self, model_cfg, llm_hidden_size: int, folder: str):
        super().__init__()
        from xtuner.registry import BUILDER

        from mg_llava.benchmarking import published_architectures
        from mg_llava.model.mg_llava_model import mlp_projector
        from mg_llava.registry import build

        with published_architectures(model_cfg, torch.device("cpu"), folder):
            self.visual_encoder = BUILDER.build(model_cfg.visual_encoder)
            self.visual_encoder_aux = BUILDER.build(model_cfg.visual_encoder_aux)
        self.fuse_module = build(model_cfg.fusion, low_channels=self.visual_encoder.hidden_size,
                                 high_channels=self.visual_encoder_aux.out_channels[-1])
        self.object_features = build(model_cfg.object_features, in_channels=self.visual_encoder_aux.out_channels)
        depth = model_cfg.get("projector_depth", 2)
        self.projector = mlp_projector(self.fuse_module.out_channels, llm_hidden_size, depth)
        self.bbox_projector = mlp_projector(self.object_features.out_channels, llm_hidden_size, depth)
        self.encoder_chunk_size = None

    def encode(self, pixel_values, pixel_values_aux, boxes, chunk_size):
        from mg_llava.model import MGLLaVAModel, image_sequences

        self.encoder_chunk_size = chunk_size
        parts = MGLLaVAModel.encode_images(self, pixel_values, pixel_values_aux, boxes)
        return image_sequences(parts.grids, boxes=parts.boxes)  # per frame: [grid][boxes]


def llm_width(model_cfg) -> int:
    from transformers import AutoConfig

    from mg_llava.model.reference_configs import LLMS, llm_config

    path = model_cfg.llm.pretrained_model_name_or_path
    if osp.isdir(path):
        return AutoConfig.from_pretrained(path).hidden_size
    names = {hub: name for name, (_, _, hub) in LLMS.items()}
    if path not in names:
        raise ValueError(f"LLM {path!r} is neither a local folder nor a published one ({sorted(names)})")
    return llm_config(names[path]).hidden_size


def random_video(frames: int, boxes: int, low_res: int, high_res: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.standard_normal((frames, 3, low_res, low_res), dtype=np.float32))
    high = torch.from_numpy(rng.standard_normal((frames, 3, high_res, high_res), dtype=np.float32))
    per_frame = []
    for _ in range(frames):
        corners = rng.uniform(0, high_res - 16, (boxes, 2))
        sides = rng.uniform(8, high_res / 2, (boxes, 2))
        per_frame.append(torch.tensor(np.concatenate([corners, np.minimum(corners + sides, high_res)], 1),
                                      dtype=torch.float32))
    return low, high, per_frame


def measure(path: VisionPath, video, chunk_size: int) -> dict:
    release_free_memory()
    before = rss_bytes()
    reset_peak_rss()
    start = time.perf_counter()
    tokens = path.encode(*video, chunk_size)
    seconds = time.perf_counter() - start
    peak, after = peak_rss_bytes(), rss_bytes()
    num_tokens = [len(t) for t in tokens]
    del tokens
    release_free_memory()
    return dict(chunk_size=chunk_size, peak_increase_gib=(peak - before) / 2 ** 30,
                kept_gib=(after - before) / 2 ** 30, seconds=seconds, tokens_per_frame=num_tokens[0],
                baseline_gib=before / 2 ** 30)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="a config name (tools/list_configs.py) or path")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=20, help="random boxes per frame")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default="work_dirs/benchmark_video_memory.json")
    args = parser.parse_args(argv)
    if not osp.exists("/proc/self/clear_refs"):
        sys.exit("this tool reads the resident set from Linux's /proc; it cannot run here")
    if args.threads:
        torch.set_num_threads(args.threads)
    mmap_all = use_mmap_for_large_allocations()
    cfg = load_config(args.config)
    views = cfg.image_views
    low_res, high_res = views.get("low_res") or 336, views.high_res
    with tempfile.TemporaryDirectory() as folder:
        path = VisionPath(cfg.model.copy(), llm_width(cfg.model), folder).train()
    video = random_video(args.frames, args.boxes, low_res, high_res)
    result = dict(config=args.config, frames=args.frames, boxes_per_frame=args.boxes, low_res=low_res,
                  high_res=high_res, dtype="float32", device="cpu", torch_threads=torch.get_num_threads(),
                  mmap_threshold_bytes=MMAP_THRESHOLD if mmap_all else None, runs=[])
    rows = result["runs"]
    os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
    for chunk_size in tqdm(args.chunk_sizes, desc="chunk sizes", unit="run"):
        rows.append(measure(path, video, chunk_size))
        with open(args.json, "w") as f:  # after each run: a long benchmark leaves what it measured
            json.dump(result, f, indent=2)
    print(f"\nVideo encoder path, {args.frames} frames at {low_res}/{high_res} px, {args.boxes} boxes a frame, "
          f"fp32 CPU, random weights ({args.config}); baseline RSS {rows[0]['baseline_gib']:.2f} GiB")
    print(f"{'chunk':>5} | {'peak increase GiB':>17} | {'kept after GiB':>14} | {'seconds':>8} | {'tokens/frame':>12}")
    for row in rows:
        print(f"{row['chunk_size']:>5} | {row['peak_increase_gib']:>17.2f} | {row['kept_gib']:>14.2f} | "
              f"{row['seconds']:>8.1f} | {row['tokens_per_frame']:>12}")
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
