"""Load-test the OpenAI-compatible server (tools/serve.py) with and without batching; prints a table, writes JSON.

    # the tiny model `make demo` trained, on the CPU: 200 requests from 16 clients, batch sizes 1 and 8
    python tools/bench_serve.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \\
        --checkpoint work_dirs/mg_llava_tiny_cpu_finetune/iter_360.pth --device cpu \\
        --images work_dirs/tiny_assets/data/images --json work_dirs/bench_serve.json

The model loads once; for each --batch-sizes entry a server (tools/serve.py's, in this process, on a free local
port) answers --requests requests from --concurrency client threads of the official `openai` client, request i
about image i % (number of images). Each image's answer is first asked alone; every answered request must equal its
own image's answer (none mixed up), every other request must be refused with a documented status (none lost).
Reports answered requests/s and p50/p95 latency of the answered requests. The model options are tools/chat.py's.
"""
import argparse
import base64
import json
import mimetypes
import os
import os.path as osp
import sys

DEFAULT_QUESTION = "Describe the picture in detail."


def parse_args(argv=None):
    from mg_llava.inference.cli import add_model_args

    parser = argparse.ArgumentParser(description="Benchmark tools/serve.py under load",
                                     formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--images", required=True, help="folder of images (each a different request content)")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="one server run per entry")
    parser.add_argument("--max-pending", type=int, help="the servers' admission limit (default: --concurrency; "
                                                        "lower it to see refusals)")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def image_items(folder: str, question: str):
    from mg_llava.serving.loadtest import LoadItem

    items = []
    for name in sorted(os.listdir(folder)):
        mime = mimetypes.guess_type(name)[0]
        if mime is None or not mime.startswith("image/"):
            continue
        with open(osp.join(folder, name), "rb") as f:
            items.append(LoadItem(name, f"data:{mime};base64,{base64.b64encode(f.read()).decode()}", question))
    if not items:
        raise SystemExit(f"no images in {folder}")
    return items


def main(argv=None):
    import openai

    from mg_llava.inference.cli import load_from_args
    from mg_llava.serving import ModelServer, ServerSettings, ServerThread
    from mg_llava.serving.loadtest import check_answers, reference_answers, run_load, summarize

    args = parse_args(argv)
    items = image_items(args.images, args.question)
    loaded = load_from_args(args)
    max_pending = args.max_pending or args.concurrency
    references, runs = None, []
    for batch_size in args.batch_sizes:
        settings = ServerSettings(model_name="mg-llava", max_batch_size=batch_size, max_pending=max_pending,
                                  default_max_tokens=args.max_tokens)
        server = ModelServer(loaded, settings)
        with ServerThread(server.app()) as thread:
            client = openai.OpenAI(base_url=thread.url + "/v1", api_key="none", max_retries=0, timeout=600)
            if references is None:
                references = reference_answers(client, "mg-llava", items, args.max_tokens, boxes="none")
            records, wall_s = run_load(client, "mg-llava", items, args.requests, args.concurrency, args.max_tokens)
        summary = summarize(records, wall_s)
        mixed = check_answers(records, references)
        summary.update(max_batch_size=batch_size, max_pending=max_pending, mixed_up=len(mixed),
                       batch_sizes={str(k): v for k, v in sorted(server.batcher.batch_sizes.items())})
        runs.append(summary)
        for line in mixed[:5]:
            print(f"MIXED UP: {line}", file=sys.stderr)
    print(f"\n{args.requests} requests, {args.concurrency} clients, {len(items)} images, max_tokens "
          f"{args.max_tokens}, device {loaded.device}")
    print(f"{'max batch':>9} | {'answered':>8} | {'refused':>7} | {'lost':>4} | {'mixed up':>8} | {'req/s':>6} | "
          f"{'p50 s':>6} | {'p95 s':>6} | batches run (size: count)")
    for r in runs:
        print(f"{r['max_batch_size']:>9} | {r['answered']:>8} | {r['refused']:>7} | {r['lost']:>4} | "
              f"{r['mixed_up']:>8} | {r['answered_per_s']:>6} | {r['p50_s']:>6} | {r['p95_s']:>6} | "
              f"{r['batch_sizes']}")
    result = dict(requests=args.requests, concurrency=args.concurrency, images=len(items), question=args.question,
                  max_tokens=args.max_tokens, device=str(loaded.device), references=references, runs=runs)
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"results: {args.json}")
    if any(r["lost"] or r["mixed_up"] for r in runs):
        raise SystemExit("requests were lost or mixed up (see above)")
    return result


if __name__ == "__main__":
    main()
