"""Benchmark the training data path at the real sizes (768 high-res view, 336 low-res view).

Two measurements, each printed as a table and written as JSON:

``throughput`` (default): full ``__getitem__`` + collate through a DataLoader (default 2 workers) over synthetic
640x480 JPEGs made from scikit-image photographs, each with 20-100 boxes, after a burn-in; plus a per-stage
breakdown measured in the main process. One H100 in stage 1 consumes about 17 samples/s. The three ways of handing
the views over are measured in the same run (``--views``), the per-stage figures interleaved sample by sample so
that all see the same machine load:

- ``decoded`` (``resize_on_device``, the GPU recipes): the loader hands over the decoded image; the model's data
  preprocessor pads it, resizes it (Pillow's resize reproduced in torch) and finishes the views on the device;
- ``uint8`` (the dataset's default, the tiny CPU configs): the loader makes the uint8 high-res view with Pillow; the
  preprocessor normalises it and makes the low-res view on the device;
- ``float`` (``uint8_views=False``, what the loader did before): both float views made and batched on the CPU.

The preprocessor's cost on this CPU is reported apart, as ``device_finish``: on a GPU it is device time, not loader
time (and there the resize is a few small kernels; on this CPU it is slower than Pillow).

``startup``: what a launch costs for a large synthetic conversation file: tokenising it (once), loading it back in
XTuner's offline mode, reading the box file, and the ``modality_length`` the length-grouped sampler asks for.

    python tools/benchmark_dataset.py throughput --out work_dirs/bench_data.json
    python tools/benchmark_dataset.py startup --samples 100000 --replicate 13 --out work_dirs/bench_startup.json

Everything is built offline (tiny tokenizer, a CLIP processor with OpenAI mean/std); the machine's CPUs are the
limit, so say how many and whether they were shared when quoting the numbers.
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np
from tqdm import tqdm

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS = ["What is in the image?", "Describe the picture in detail.", "What colour is the sky?"]
ANSWERS = ["The image shows a cat, a dog and a person.", "There is a red ball on the left and a blue box on the right."]
HAND_OVERS = ("float", "uint8", "decoded")
LABELS = ["cat", "dog", "person", "car", "bus", "bird", "tree", "cup", "chair", "clock", "boat", "flag"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["throughput", "startup"], default="throughput")
    parser.add_argument("--work-dir", default="work_dirs/bench_data", help="synthetic data and tiny tokenizer")
    parser.add_argument("--out", default=None, help="JSON result path (default: <work-dir>/<mode>.json)")
    parser.add_argument("--high-res", type=int, default=768)
    parser.add_argument("--low-res", type=int, default=336)
    parser.add_argument("--num-images", type=int, default=48, help="distinct synthetic JPEGs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--views", choices=["all", *HAND_OVERS], default="all",
                        help="throughput: the hand-over(s) to measure")
    parser.add_argument("--burn-in", type=int, default=3, help="batches before timing")
    parser.add_argument("--batches", type=int, default=20, help="timed batches")
    parser.add_argument("--samples", type=int, default=100_000, help="startup: samples to tokenise")
    parser.add_argument("--replicate", type=int, default=13, help="startup: offline copies loaded (x samples)")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count(), help="startup: tokenisation processes")
    return parser.parse_args()


def clip_processor(size):
    from transformers import CLIPImageProcessor

    from mg_llava.testing.tiny_models import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    return CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def tokenizer(work_dir):
    from transformers import AutoTokenizer

    from mg_llava.testing.tiny_models import build_tokenizer

    path = osp.join(work_dir, "tokenizer")
    if not osp.exists(osp.join(path, "tokenizer_config.json")):
        build_tokenizer(path, "vicuna")
    return AutoTokenizer.from_pretrained(path)


def make_images(folder, count, rng):
    """``count`` 640x480 JPEGs: crops, flips and shifts of the scikit-image photographs."""
    from PIL import Image, ImageOps

    from mg_llava.testing.images import SKIMAGE_IMAGES, load_skimage

    os.makedirs(folder, exist_ok=True)
    photos = [load_skimage(name) for name in SKIMAGE_IMAGES]
    names = []
    for i in range(count):
        photo = photos[i % len(photos)]
        zoom = 1.0 + 0.5 * rng.random()
        big = photo.resize((int(640 * zoom), int(480 * zoom)), Image.Resampling.BICUBIC)
        x, y = rng.integers(0, big.width - 640 + 1), rng.integers(0, big.height - 480 + 1)
        image = big.crop((x, y, x + 640, y + 480))
        if i % 2:
            image = ImageOps.mirror(image)
        name = f"img_{i:04d}.jpg"
        image.save(osp.join(folder, name), quality=90)
        names.append(name)
    return names


def random_boxes(rng, width, height, count):
    """``count`` detector-like boxes: clustered objects, some overlapping, a few reaching past the border."""
    x1 = rng.uniform(-10, width - 20, count)
    y1 = rng.uniform(-10, height - 20, count)
    w = rng.uniform(10, width / 2, count)
    h = rng.uniform(10, height / 2, count)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).round().astype(int)
    return dict(
        boxes=boxes.tolist(),
        scores=rng.uniform(0.2, 1.0, count).round(3).tolist(),
        labels=[LABELS[i] for i in rng.integers(0, len(LABELS), count)],
    )


def conversation(rng, with_image):
    turns = []
    for turn in range(int(rng.integers(1, 4))):
        question = " ".join(rng.choice(QUESTIONS, int(rng.integers(1, 4))))
        if with_image and turn == 0:
            question = "<image>\n" + question
        turns += [{"from": "human", "value": question},
                  {"from": "gpt", "value": " ".join(rng.choice(ANSWERS, int(rng.integers(2, 8))))}]
    return turns


def write_data(work_dir, num_samples, image_names, rng, text_only_every=10):
    """A LLaVA JSONL file and its box file; every ``text_only_every``-th sample has no image."""
    data_path = osp.join(work_dir, f"data_{num_samples}.jsonl")
    box_path = osp.join(work_dir, f"boxes_{num_samples}.json")
    entries = []
    with open(data_path, "w") as f:
        for i in range(num_samples):
            sample = {"id": str(i)}
            with_image = i % text_only_every != 0
            if with_image:
                sample["image"] = image_names[i % len(image_names)]
                entries.append({"id": str(i), **random_boxes(rng, 640, 480, int(rng.integers(20, 101)))})
            sample["conversations"] = conversation(rng, with_image)
            f.write(json.dumps(sample) + "\n")
    with open(box_path, "w") as f:
        json.dump(entries, f)
    return data_path, box_path


def build_dataset(args, data_path=None, box_path=None, offline=None, num_proc=1):
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews, LLaVABoxDataset

    views = ImageViews(clip_processor(args.low_res), high_res=args.high_res)
    if offline:
        text = dict(offline_processed_text_folder=offline)
    else:
        text = dict(
            data_path=data_path,
            tokenizer=tokenizer(args.work_dir),
            template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
            max_length=2048 - (args.low_res // 14) ** 2,  # SPEC 1.7: 2048 minus the 576 image tokens
            num_proc=num_proc,
        )
    return LLaVABoxDataset(
        image_folder=osp.join(args.work_dir, "images"), image_views=views, box_file=box_path, **text
    )


def stage_times(datasets, indices, batch_size):
    """CPU milliseconds per sample of each stage and each hand-over, in this process (one thread, like a DataLoader
    worker), the hand-overs interleaved sample by sample and batch by batch.

    CPU time rather than wall time, so that other programs on the machine inflate it less; 1000 * cores / the
    getitem + collate sum is then what the DataLoader could reach with those cores to itself.
    """
    from mg_llava.dataset import llava_box_collate_fn, load_image, prepare_boxes
    from mg_llava.model import ViewsDataPreprocessor

    clock = time.process_time
    stages = ("text_row", "decode", "views", "boxes", "getitem")
    totals = {name: dict.fromkeys(stages, 0.0) for name in datasets}
    items = {name: [] for name in datasets}
    for index in indices:
        for name, dataset in datasets.items():
            views = dataset.image_views
            t0 = clock()
            row = dataset.text_data[index]
            t1 = clock()
            image, size = load_image(osp.join(dataset.image_folder, row["image"]), min_side=views.reduced_decode_side)
            t2 = clock()
            view = (views.decoded if dataset.resize_on_device else views.pixels)(image, original_size=size)
            if not dataset.uint8_views:
                views.finish(view.pixels[None])
            t3 = clock()
            boxes, scores, labels = dataset.box_table.arrays(dataset.box_rows[index])
            prepare_boxes(boxes, scores, labels, view.geometry, dataset.max_boxes, dataset.iou_threshold)
            t4 = clock()
            items[name].append(dataset[index])
            t5 = clock()
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                totals[name][key] += dt
    result = {name: {key: 1000 * value / len(indices) for key, value in stage.items()} for name, stage in totals.items()}
    collate = dict.fromkeys(datasets, 0.0)
    finish = dict.fromkeys(datasets, 0.0)
    for start in range(0, len(indices), batch_size):
        for name, dataset in datasets.items():
            t0 = clock()
            batch = llava_box_collate_fn(items[name][start:start + batch_size])
            t1 = clock()
            if dataset.uint8_views:
                ViewsDataPreprocessor.from_image_views(dataset.image_views)(batch)
            finish[name] += clock() - t1
            collate[name] += t1 - t0
    for name, dataset in datasets.items():
        result[name]["collate"] = 1000 * collate[name] / len(indices)
        if dataset.uint8_views:
            result[name]["device_finish"] = 1000 * finish[name] / len(indices)
    return result


def hand_over(dataset) -> str:
    return "decoded" if dataset.resize_on_device else "uint8" if dataset.uint8_views else "float"


def loader_throughput(dataset, args):
    """Samples, images and boxes per second through a DataLoader (wall clock, after the burn-in)."""
    import torch
    from torch.utils.data import DataLoader

    from mg_llava.dataset import llava_box_collate_fn

    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers,
        collate_fn=llava_box_collate_fn, persistent_workers=args.num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    batches = iter(loader)
    for _ in range(args.burn_in):
        next(batches)
    t0 = time.perf_counter()
    samples = images = boxes = 0
    for _ in tqdm(range(args.batches), desc=f"DataLoader, {hand_over(dataset)} views"):
        data = next(batches)["data"]
        samples += data["input_ids"].shape[0]
        images += len(data.get("boxes", []))
        boxes += sum(len(b) for b in data.get("boxes", []))
    elapsed = time.perf_counter() - t0
    del batches, loader
    return dict(samples_per_s=samples / elapsed, images_per_s=images / elapsed,
                mean_boxes_per_image_after_rules=boxes / max(images, 1))


def throughput(args):
    import copy

    import torch

    rng = np.random.default_rng(0)
    image_names = make_images(osp.join(args.work_dir, "images"), args.num_images, rng)
    num_samples = args.batch_size * (args.burn_in + args.batches) * 2
    data_path, box_path = write_data(args.work_dir, num_samples, image_names, rng)
    dataset = build_dataset(args, data_path, box_path)
    names = list(HAND_OVERS) if args.views == "all" else [args.views]
    datasets = {}
    for name in names:  # the same tokenised samples and box table, each hand-over
        datasets[name] = copy.copy(dataset)
        datasets[name].uint8_views = name != "float"
        datasets[name].resize_on_device = name == "decoded"

    image_indices = [i for i in range(len(dataset)) if dataset.text_data[i]["image"] is not None][:64]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    stages = stage_times(datasets, image_indices, args.batch_size)
    torch.set_num_threads(threads)
    result = dict(mode="throughput", cpus=os.cpu_count(), high_res=args.high_res, low_res=args.low_res,
                  batch_size=args.batch_size, num_workers=args.num_workers, timed_batches=args.batches,
                  stage_samples=len(image_indices), views={})
    for name in names:
        per_sample = stages[name]["getitem"] + stages[name]["collate"]
        result["views"][name] = dict(
            **loader_throughput(datasets[name], args),
            cpu_ms_per_sample_by_stage=stages[name],
            cpu_ms_per_sample=per_sample,
            samples_per_s_if_cpus_free=1000 * os.cpu_count() / per_sample,
        )
    result["load_average_1min"] = os.getloadavg()[0]
    ratios = {f"cpu_ms_per_sample_{name}_over_float": result["views"][name]["cpu_ms_per_sample"]
              / result["views"]["float"]["cpu_ms_per_sample"] for name in names if name != "float" and "float" in names}
    result.update(ratios)

    def row(label, key, fmt, source=lambda v: v):
        return (label, *[format(source(result["views"][name])[key], fmt) if key in source(result["views"][name])
                         else "-" for name in names])

    by_stage = lambda v: v["cpu_ms_per_sample_by_stage"]  # noqa: E731
    rows = [
        ("views handed over", *names),
        row("DataLoader samples/s (measured, wall clock)", "samples_per_s", ".1f"),
        row("DataLoader images/s", "images_per_s", ".1f"),
        row("boxes/image after NMS+limit+clip", "mean_boxes_per_image_after_rules", ".1f"),
        *[row(f"CPU ms/sample: {key}", key, ".2f", by_stage) for key in stages[names[-1]] if key != "device_finish"],
        row("CPU ms/sample: getitem + collate", "cpu_ms_per_sample", ".2f"),
        row(f"samples/s with {os.cpu_count()} free CPUs (getitem+collate)", "samples_per_s_if_cpus_free", ".1f"),
        row("CPU ms/sample, data preprocessor (GPU's work)", "device_finish", ".2f", by_stage),
    ]
    for name in names:
        key = f"cpu_ms_per_sample_{name}_over_float"
        if key in result:
            rows.append((f"getitem + collate, {name} / float", *["" for _ in names[:-1]], f"{result[key]:.2f}"))
    rows += [("workers / batch size / CPUs", f"{args.num_workers} / {args.batch_size} / {os.cpu_count()}"),
             ("1-min load average at the end", f"{result['load_average_1min']:.2f}")]
    return result, rows


def startup(args):
    from datasets import concatenate_datasets, load_from_disk

    from mg_llava.dataset import load_box_file

    rng = np.random.default_rng(0)
    image_names = make_images(osp.join(args.work_dir, "images"), args.num_images, rng)
    data_path, box_path = write_data(args.work_dir, args.samples, image_names, rng)
    result = dict(mode="startup", cpus=os.cpu_count(), samples=args.samples, num_proc=args.num_proc)

    t0 = time.perf_counter()
    dataset = build_dataset(args, data_path, box_path, num_proc=args.num_proc)
    result["tokenise_from_jsonl_s"] = time.perf_counter() - t0
    folder = osp.join(args.work_dir, f"tokenised_{args.samples}")
    t0 = time.perf_counter()
    dataset.text_data.save_to_disk(folder)
    result["save_to_disk_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = load_box_file(box_path)
    result["box_file_entries"] = len(table)
    result["box_file_mb"] = osp.getsize(box_path) / 2**20
    result["load_box_file_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    offline = build_dataset(args, box_path=box_path, offline=folder)
    offline.modality_length
    result["offline_launch_s"] = time.perf_counter() - t0  # load_from_disk + box file + matching + lengths

    # the same launch at full scale: the tokenised rows copied ``replicate`` times (ids stay valid box ids)
    big = osp.join(args.work_dir, f"tokenised_{args.samples}x{args.replicate}")
    if not osp.exists(big):
        concatenate_datasets([load_from_disk(folder)] * args.replicate).save_to_disk(big)
    t0 = time.perf_counter()
    offline = build_dataset(args, box_path=box_path, offline=big)
    offline.modality_length
    result["offline_launch_replicated_s"] = time.perf_counter() - t0
    result["replicated_samples"] = len(offline)
    rows = [
        (f"tokenise {args.samples} samples ({args.num_proc} proc)", f"{result['tokenise_from_jsonl_s']:.1f} s"),
        ("  per 1M samples (extrapolated)", f"{result['tokenise_from_jsonl_s'] * 1e6 / args.samples / 60:.1f} min"),
        ("save tokenised text to disk", f"{result['save_to_disk_s']:.1f} s"),
        (f"read box file ({len(table)} entries, {result['box_file_mb']:.0f} MB)", f"{result['load_box_file_s']:.1f} s"),
        (f"offline launch, {args.samples} samples", f"{result['offline_launch_s']:.1f} s"),
        (f"offline launch, {len(offline)} samples", f"{result['offline_launch_replicated_s']:.1f} s"),
    ]
    return result, rows


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    import datasets

    import mg_llava  # noqa: F401  (registers the modules)

    datasets.disable_progress_bars()
    result, rows = throughput(args) if args.mode == "throughput" else startup(args)
    width = max(len(name) for name, *_ in rows)
    columns = max(len(values) for _, *values in rows)
    print(f"\n{'-' * (width + 12 * columns + 2)}")
    for name, *values in rows:
        print(f"{name:<{width}}  " + "".join(f"{value:>12}" for value in values))
    print(f"{'-' * (width + 12 * columns + 2)}")
    out = args.out or osp.join(args.work_dir, f"{args.mode}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
