"""Evaluate a trained MG-LLaVA on a benchmark file: greedy, batched, sharded, resumable.

    # MMBench-dev (TSV with base64 images), circular evaluation, boxes precomputed by data_prep/ (ids = index)
    python tools/evaluate.py --config xtuner_configs/.../mg_llava_vicuna7b_finetune.py \\
        --checkpoint work_dirs/.../iter_5198.pth --benchmark mmbench_dev_en.tsv --format mmbench --circular \\
        --boxes mmbench_dev_en_boxes.json --out-dir eval/mmbench_dev
    # TextVQA (JSONL + image folder) on 8 GPUs: each process takes its shard from torchrun's RANK/WORLD_SIZE
    torchrun --nproc_per_node 8 tools/evaluate.py --checkpoint exported/ --benchmark textvqa_val.jsonl \\
        --image-folder textvqa/train_images --format textvqa --boxes textvqa_boxes.json --out-dir eval/textvqa
    # MSVD-QA (test_q.json + test_a.json beside it, videos by name), per-frame boxes from a video box file
    python tools/evaluate.py --checkpoint exported/ --benchmark msvd/test_q.json --image-folder msvd/videos \
        --format msvd_qa --boxes msvd_boxes.json --out-dir eval/msvd_qa
    # metrics again from the predictions already written
    python tools/evaluate.py --benchmark textvqa_val.jsonl --format vqa --out-dir eval/textvqa --metrics-only

Formats: multiple_choice (mmbench, seed, mmstar, scienceqa, ai2d), vqa (textvqa, docvqa, gqa, vqav2), pope, mme,
mmvet and llava_wild (answer files only), video_qa (msvd_qa, msrvtt_qa, activitynet_qa: exact/normalised match
and the answer file of the GPT-assisted scorers); see mg_llava/inference/benchmarks.py for the file layouts. Writes
<out-dir>/predictions.shard<k>of<n>.jsonl and, once every item is predicted, <out-dir>/metrics.json. Rerunning the
same command resumes. Without --shard/--num-shards the shard comes from RANK/WORLD_SIZE (torchrun), else 0 of 1.
"""
import argparse
import json

from mg_llava.dataset import load_box_file
from mg_llava.inference.benchmarks import FORMATS, read_benchmark
from mg_llava.inference.cli import add_model_args, load_from_args
from mg_llava.inference.evaluate import ModelAnswerer, finalize, resolve_shard, run_evaluation

OPEN_ENDED = ("mmvet", "llava_wild")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate MG-LLaVA on a benchmark",
                                     formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--benchmark", required=True, help="the benchmark file (.tsv or .jsonl)")
    parser.add_argument("--format", required=True, help=f"one of {FORMATS} or a benchmark name")
    parser.add_argument("--image-folder", help="root of the JSONL files' 'image' (and a TSV's 'image_path'); for "
                                               "video_qa the folder of the videos")
    parser.add_argument("--num-frames", type=int, help="frames sampled per video (default: the training config's)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--circular", action="store_true", help="circular evaluation (multiple choice)")
    parser.add_argument("--prompt-suffix", help="override SPEC 5's instruction appended to each question ('' for "
                                                "none)")
    parser.add_argument("--boxes", help="box file (released format) keyed by the benchmark's index/question_id")
    parser.add_argument("--no-boxes", action="store_true", help="evaluate without object boxes")
    parser.add_argument("--allow-missing-boxes", action="store_true",
                        help="an item without a box entry gets zero boxes instead of being a bad sample")
    parser.add_argument("--on-bad-sample", default="raise", choices=["raise", "skip"],
                        help="a bad row or unreadable image: stop with an error naming it, or skip and count it")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2, help="image decoding processes")
    parser.add_argument("--max-new-tokens", type=int, help="default: 128, or 1024 for mmvet/llava_wild")
    parser.add_argument("--shard", type=int)
    parser.add_argument("--num-shards", type=int)
    parser.add_argument("--metrics-only", action="store_true", help="only (re)compute metrics from predictions")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    benchmark = read_benchmark(args.benchmark, args.format, image_folder=args.image_folder, circular=args.circular,
                               prompt_suffix=args.prompt_suffix, on_bad_sample=args.on_bad_sample)
    if args.metrics_only:
        result = finalize(benchmark, args.out_dir)
        if result is None:
            raise SystemExit(f"{args.out_dir}: not every item has a prediction yet")
        print(json.dumps(result["metrics"], indent=2))
        return result
    if (args.boxes is None) == (not args.no_boxes):
        raise SystemExit("give --boxes (precomputed, keyed by the benchmark's index) or --no-boxes")
    box_table = load_box_file(args.boxes) if args.boxes else None
    shard, num_shards = resolve_shard(args.shard, args.num_shards)
    loaded = load_from_args(args)
    if args.num_frames is not None:
        loaded.preprocessor.num_frames = args.num_frames
    max_new_tokens = args.max_new_tokens or (1024 if benchmark.format in OPEN_ENDED else 128)
    answerer = ModelAnswerer(loaded, box_table, allow_missing_boxes=args.allow_missing_boxes,
                             max_new_tokens=max_new_tokens, source=args.benchmark)
    settings = dict(circular=args.circular, prompt_suffix=args.prompt_suffix, boxes=args.boxes,
                    checkpoint=args.checkpoint, max_new_tokens=max_new_tokens)
    if benchmark.format == "video_qa":
        settings["num_frames"] = loaded.preprocessor.num_frames
    if args.granularity is not None:  # AVG-LLaVA with a forced granularity: not to be mixed with routed predictions
        settings["granularity"] = args.granularity
    result = run_evaluation(benchmark, args.out_dir, answerer.prepare, answerer.answer, batch_size=args.batch_size,
                            shard=shard, num_shards=num_shards, on_bad_sample=args.on_bad_sample,
                            num_workers=args.num_workers, settings=settings, progress=not args.no_progress)
    if result is not None:
        print(json.dumps(result["metrics"], indent=2))
    return result


if __name__ == "__main__":
    main()
