"""Command lines behind ``data_prep/*.py``: generate (one shard), merge, draw."""
import argparse
import json
import logging
import os
import random
import sys

import torch

from ..data_files import named_file_errors, read_json_list
from .images import DEFAULT_MAX_PIXELS
from .owlv2 import DEFAULT_OWLV2
from .taggers.clip import DEFAULT_CLIP

TAGGERS = ("ram_plus", "clip", "coco80", "fixed")


def default_device() -> str:
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"  # one GPU per torchrun process
    return "cpu"


def add_generator_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("tagger")
    g.add_argument("--tagger", choices=TAGGERS, default="ram_plus",
                   help="ram_plus (the released pipeline), clip (CLIP scores --vocabulary), coco80 (the fixed COCO "
                        "names), fixed (every image gets all of --vocabulary)")
    g.add_argument("--ram-checkpoint", help="ram_plus_swin_large_14m.pth (for --tagger ram_plus)")
    g.add_argument("--clip-model", default=DEFAULT_CLIP, help="CLIP hub id or folder (for --tagger clip)")
    g.add_argument("--vocabulary", help="'lvis', 'coco80', or a text file with one tag per line "
                                        "(default: lvis for clip, coco80 for fixed)")
    g.add_argument("--top-k", type=int, default=10, help="clip: at most this many tags per image")
    g.add_argument("--min-prob", type=float, default=0.01, help="clip: drop tags below this softmax probability")
    d = parser.add_argument_group("detector")
    d.add_argument("--detector", default=DEFAULT_OWLV2, help="OWLv2 hub id or folder")
    d.add_argument("--score-threshold", type=float, default=0.2)
    d.add_argument("--prompt", default="a photo of {tag}")
    d.add_argument("--nms-iou", type=float, default=None, help="class-aware NMS at this IoU (default: none)")
    d.add_argument("--preprocess", choices=("transformers", "torch"), default="transformers",
                   help="transformers: the official Owlv2Processor (as the released generation); torch: a fast "
                        "approximate resize on the device (see README for the box difference)")
    d.add_argument("--released-format", action="store_true",
                   help="write boxes as the released generation did: original pixels, not clipped to the image, "
                        "truncated toward zero, zero-area boxes kept, OWLv2's order, full scores (no --nms-iou); "
                        "with --tagger ram_plus and box_rule='released' this reproduces the released boxes")
    r = parser.add_argument_group("runtime")
    r.add_argument("--device", default=None, help="default: cuda:$LOCAL_RANK if available, else cpu")
    r.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))


def generator_config(args) -> dict:
    """The registry config of the box generator the arguments describe."""
    device = args.device or default_device()
    if args.tagger == "ram_plus":
        if not args.ram_checkpoint:
            raise SystemExit("--tagger ram_plus needs --ram-checkpoint (or use --tagger clip / coco80)")
        tagger = dict(type="RAMPlusTagger", checkpoint=args.ram_checkpoint, device=device, dtype=args.dtype)
    elif args.tagger == "clip":
        tagger = dict(type="CLIPTagger", model=args.clip_model, vocabulary=args.vocabulary or "lvis",
                      top_k=args.top_k, min_prob=args.min_prob, device=device, dtype=args.dtype)
    elif args.tagger == "coco80":
        tagger = dict(type="FixedTagger", vocabulary="coco80")
    else:
        if not args.vocabulary:
            raise SystemExit("--tagger fixed needs --vocabulary")
        tagger = dict(type="FixedTagger", vocabulary=args.vocabulary)
    detector = dict(type="OWLv2Detector", model=args.detector, score_threshold=args.score_threshold,
                    prompt=args.prompt, nms_iou_threshold=args.nms_iou, preprocess=args.preprocess,
                    box_format="released" if args.released_format else "clean",
                    device=device, dtype=args.dtype)
    return dict(type="BoxGenerator", tagger=tagger, detector=detector)


def build_generator(args):
    from mg_llava.registry import MODELS

    return MODELS.build(generator_config(args))


def add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="LLaVA JSON/JSONL (id, image) or eval JSONL/TSV")
    parser.add_argument("--image-folder", default=None, help="folder the 'image' paths are relative to")
    parser.add_argument("--id-key", default=None, help="id field (default: the first of id, question_id, index)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="skip larger images (decompression-bomb guard; default: PIL's limit)")
    parser.add_argument("--on-duplicate-conflict", choices=("error", "skip"), default="error",
                        help="an id naming two different images: stop (error) or drop that id and list it (skip)")


def _logging():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def generate_main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Generate boxes (tagger -> OWLv2) for one shard of a dataset; "
                                                 "resumable. One process per GPU (torchrun) or per slurm task.")
    add_input_args(parser)
    parser.add_argument("--out-dir", required=True, help="part files, run.json, and after merging boxes.json")
    parser.add_argument("--shard", type=int, default=None, help="this shard (default: $RANK under torchrun, else 0)")
    parser.add_argument("--num-shards", type=int, default=None, help="default: $WORLD_SIZE under torchrun, else 1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=4, help="image decoding processes")
    parser.add_argument("--no-merge", action="store_true", help="with a single shard, do not merge at the end")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--video-folder", default=None, help="folder the 'video' paths are relative to (default: "
                                                             "--image-folder)")
    parser.add_argument("--num-frames", type=int, default=8,
                        help="frames boxed per video: the ones the training dataset samples with the same num_frames")
    add_generator_args(parser)
    args = parser.parse_args(argv)
    _logging()

    from .pipeline import run_shard
    from .shards import merge_shards

    report = run_shard(build_generator(args), args.data, args.out_dir, image_folder=args.image_folder,
                       shard=args.shard, num_shards=args.num_shards, batch_size=args.batch_size,
                       num_workers=args.num_workers, max_pixels=args.max_pixels, id_key=args.id_key,
                       on_duplicate_conflict=args.on_duplicate_conflict, progress=not args.no_progress,
                       video_folder=args.video_folder, num_frames=args.num_frames)
    print(json.dumps(report))
    if report["num_shards"] == 1 and not args.no_merge:
        summary = merge_shards(args.out_dir)
        print(f"wrote {summary['box_file']}: {summary['images']} images (video frames included), "
              f"{summary['boxes_total']} boxes, {summary['skipped_total']} skipped")
    return report


def merge_main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Merge the shards of a box generation run into one box file "
                                                 "(checks every shard finished) and write its summary.")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--output", default=None, help="box file (default: OUT_DIR/boxes.json)")
    args = parser.parse_args(argv)
    from .shards import merge_shards

    summary = merge_shards(args.out_dir, args.output)
    print(json.dumps({k: summary[k] for k in ("box_file", "images", "boxes_total",
                                              "boxes_per_image_histogram", "skipped")}, indent=2))
    return summary


def draw_main(argv=None) -> str:
    parser = argparse.ArgumentParser(description="Draw boxes on N samples and save one grid PNG: from a box file "
                                                 "(--boxes), or by running the tagger and detector now.")
    add_input_args(parser)
    parser.add_argument("--boxes", default=None, help="box file to draw; without it, boxes are generated now")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="which samples (a random choice with this seed)")
    parser.add_argument("--cols", type=int, default=4)
    add_generator_args(parser)
    args = parser.parse_args(argv)
    _logging()
    from .draw import draw_samples
    from .images import ImageDecodeError, decode_base64, open_rgb, to_uint8_tensor
    from .samples import read_samples

    samples, _ = read_samples(args.data, args.image_folder, id_key=args.id_key,
                              on_conflict=args.on_duplicate_conflict, video_folder=False)  # draws images only
    if args.boxes:
        with named_file_errors(args.boxes, "box file"):
            records = {r["id"]: r for r in read_json_list(args.boxes, "box file")}
        samples = [s for s in samples if s.id in records]
    random.Random(args.seed).shuffle(samples)
    generator = None if args.boxes else build_generator(args)
    chosen, images = [], []
    for sample in samples:
        if len(chosen) == args.num:
            break
        where = f"sample {sample.id!r} ({sample.source})"
        try:
            source = sample.path if sample.path is not None else decode_base64(sample.b64, where)
            image, _ = open_rgb(source, args.max_pixels, where=where)
        except ImageDecodeError as skip:
            logging.getLogger(__name__).warning("not drawn: %s", skip)
            continue
        if generator is not None:
            record = dict(id=sample.id, **generator(to_uint8_tensor(image)))
        else:
            record = records[sample.id]
        chosen.append(record)
        images.append(image)
    if not chosen:
        raise SystemExit(f"no drawable samples in {args.data}")
    draw_samples(chosen, images, args.out, cols=args.cols)
    print(f"wrote {args.out} ({len(chosen)} samples)")
    return args.out


if __name__ == "__main__":
    sys.exit("run data_prep/generate_boxes.py, merge_boxes.py or draw_boxes.py")
