"""Pre-flight check of a training config's data: read every dataset as training would, before training.

    python tools/check_data.py CONFIG [--workers N] [--out DIR] [--write-clean OUT] [--accept KIND ...]
                               [--step-json step.json] [--gpus 8 16 32] [--cfg-options KEY=VALUE ...]

Reports (printed, and in DIR/report.json with every finding): images/videos missing, in the wrong folder or
unreadable (by file, the first few paths), samples without a box entry and box entries no sample uses, samples longer
than max_length (tokens cut, samples losing their whole answer), image sizes, LLM tokens per sample and boxes per
image (histograms in DIR/*.png), the modality mix, total tokens, and the steps (and, with a
``tools/benchmark_train_step.py --json`` figure, the time) of a run per GPU count. Exit status: 0 when nothing would
be lost, 1 when something not accepted (``--accept KIND``) would be. ``--write-clean OUT``: the LLaVA and box files
without the bad samples, under OUT, named as the originals.
"""
import argparse
import os
import os.path as osp
import sys


def print_report(report: dict) -> None:
    print(f"\n{report['config']}: {report['samples']} samples in {len(report['datasets'])} dataset(s), "
          f"{report['samples_kept_by_training']} kept by training")
    for kind, entry in report["problems"].items():
        files = f" in {entry['files']} files" if "files" in entry else ""
        status = "accepted" if entry["accepted"] else "LOST" if entry["drops_sample"] else "NOT ACCEPTED"
        print(f"  {kind:<20}{entry['count']:>9}{files}  [{status}] {entry['meaning']}")
        for line in entry["first"]:
            print(f"      {line}")
    cut = report["truncation"]
    print(f"  max_length: {cut['samples_over_max_length']} samples longer, {cut['tokens_cut']} tokens cut, "
          f"{cut['samples_losing_whole_answer']} lose their whole answer, {cut['samples_losing_image_token']} "
          f"their image placeholder")
    mix = report["modality"]["kept"]
    print(f"  modality (kept): {mix['text']} text, {mix['image']} image, {mix['video']} video")
    tokens = report["llm_tokens"]
    if tokens["count"]:
        print(f"  LLM tokens: {tokens['total']:.0f} in all; per sample mean {tokens['mean']:.0f}, median "
              f"{tokens['p50']:.0f}, p99 {tokens['p99']:.0f}, max {tokens['max']:.0f}")
    sizes, boxes = report["image_sizes"], report["boxes_per_image"]["after_rules"]
    if sizes["width"]["count"]:
        print(f"  images/frames: {sizes['width']['count']} decoded from {sizes['files']} files; median "
              f"{sizes['width']['p50']:.0f}x{sizes['height']['p50']:.0f}; boxes per image mean {boxes['mean']:.1f}, "
              f"max {boxes['max']:.0f}")
    plan = report["estimate"]
    print("  run: " + "; ".join(plan["assumptions"]))
    for row in plan["per_gpus"]:
        hours = f", {row['hours']:.1f} h" if row["hours"] is not None else ""
        print(f"    {row['gpus']:>4} GPUs: global batch {row['global_batch']}, {row['iterations']} iterations, "
              f"{row['optimizer_steps']} optimizer steps{hours}")
    seconds, cpu = report["seconds"], report["cpu_seconds"]
    phases = ", ".join(f"{phase} {seconds[phase]:.1f} s (CPU: {cpu[phase]['main']:.1f} s main, "
                       f"{cpu[phase]['workers']:.1f} s workers)" for phase in seconds)
    print(f"  check took {sum(seconds.values()):.1f} s with {report['workers']} workers: {phases}; "
          f"report: {report['report_path']}")
    if "clean" in report:
        print(f"  clean files ({report['clean']['samples_left_out']} samples left out): "
              + ", ".join(report["clean"]["data"]))
    if report["ok"]:
        print("OK: nothing would be lost")
    else:
        print(f"NOT OK: {report['not_accepted']} (fix the data, or --accept KIND for what you accept losing)")


def main(argv=None) -> int:
    from mmengine.config import Config, DictAction

    from mg_llava.data_check import KINDS, check_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes for tokenisation and decoding (default: all CPUs)")
    parser.add_argument("--out", help="report folder (default: work_dirs/check_data/<config name>)")
    parser.add_argument("--write-clean", metavar="OUT", help="write the files without the bad samples here")
    parser.add_argument("--accept", nargs="+", default=[], choices=sorted(KINDS), metavar="KIND",
                        help=f"findings that do not fail the check: {', '.join(sorted(KINDS))}")
    parser.add_argument("--step-json", help="tools/benchmark_train_step.py --json output, for the time estimate")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 16, 32, 64], help="GPU counts to estimate")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config settings")
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    out = args.out or osp.join("work_dirs", "check_data", osp.splitext(osp.basename(args.config))[0])
    report = check_config(cfg, out, workers=args.workers, accept=args.accept, write_clean_to=args.write_clean,
                          step_json=args.step_json, gpus=args.gpus)
    print_report(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
