"""Serve MG-LLaVA over an OpenAI-compatible HTTP API (`pip install -e .[serve]`).

    # an exported folder, boxes found on the fly for every image, an API key, on this machine only
    python tools/serve.py --checkpoint exported/vicuna7b --detector google/owlv2-large-patch14-ensemble \\
        --tagger clip --tagger-model openai/clip-vit-large-patch14 --api-key "$MG_LLAVA_API_KEY"
    # the tiny model `make demo` trained, boxes from its box file
    python tools/serve.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \\
        --checkpoint work_dirs/mg_llava_tiny_cpu_finetune/iter_360.pth --boxes work_dirs/tiny_assets/data/boxes.json

Endpoints: POST /v1/chat/completions (text and image_url parts; data URLs, local paths under --allow-local-images;
stream or not; max_tokens, temperature, top_p, stop; extra body fields `boxes` = auto | file | none and `box_id`),
GET /v1/models, GET /health. The model options are tools/chat.py's; so are the box options (--boxes, --detector).
Refusals: 401 wrong/missing key, 413 body over --max-body-mb, 400 bad request or image, 403 a local path not
allowed, 404 another model name, 429 --max-pending requests already in, 504 no answer within --timeout.
"""
import argparse
import os
import os.path as osp

from mg_llava.inference.cli import add_box_generator_args, add_model_args, build_box_generator, load_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="MG-LLaVA OpenAI-compatible server",
                                     formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--boxes", help="box file (released format) for requests with boxes 'file'")
    add_box_generator_args(parser)
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    group.add_argument("--port", type=int, default=8000)
    group.add_argument("--api-key", default=os.environ.get("MG_LLAVA_API_KEY"),
                       help="require 'Authorization: Bearer KEY' (default: $MG_LLAVA_API_KEY; none: open)")
    group.add_argument("--model-name", help="the model id clients send (default: the checkpoint's name)")
    group.add_argument("--max-batch-size", type=int, default=8, help="requests generated together (1: no batching)")
    group.add_argument("--batch-wait-ms", type=float, default=5.0,
                       help="how long a request waits for others to share its batch")
    group.add_argument("--max-pending", type=int, default=64,
                       help="requests admitted at once (preparing, waiting, generating); more get 429")
    group.add_argument("--max-body-mb", type=float, default=20.0, help="request body limit (413 above)")
    group.add_argument("--timeout", type=float, default=300.0, help="seconds until a request gets 504")
    group.add_argument("--max-new-tokens", type=int, default=512, help="max_tokens when a request gives none")
    group.add_argument("--max-tokens-limit", type=int, default=4096, help="the largest max_tokens accepted")
    group.add_argument("--temperature", type=float, default=0.0, help="temperature when a request gives none "
                                                                      "(0 = greedy)")
    group.add_argument("--allow-local-images", action="append", default=[], metavar="FOLDER",
                       help="read image_url paths (file:// or absolute) inside FOLDER (repeatable; default: none)")
    group.add_argument("--prepare-workers", type=int, default=2, help="threads decoding images and finding boxes")
    return parser.parse_args(argv)


def build_server(args):
    """The :class:`~mg_llava.serving.ModelServer` for ``args`` (the model loaded)."""
    from mg_llava.serving import ModelServer, ServerSettings

    if args.boxes is not None and not osp.isfile(args.boxes):
        raise SystemExit(f"box file not found: {args.boxes}")
    loaded = load_from_args(args)
    box_generator = build_box_generator(args, loaded.device)
    name = args.model_name or osp.basename(osp.normpath(args.checkpoint or "mg-llava"))
    settings = ServerSettings(
        model_name=name, api_key=args.api_key or None, max_batch_size=args.max_batch_size,
        max_pending=args.max_pending, batch_wait_ms=args.batch_wait_ms, max_body_bytes=int(args.max_body_mb * 2 ** 20),
        request_timeout_s=args.timeout, default_max_tokens=args.max_new_tokens, max_tokens_limit=args.max_tokens_limit,
        temperature=args.temperature, box_file=args.boxes, local_image_folders=tuple(args.allow_local_images),
        prepare_workers=args.prepare_workers)
    return ModelServer(loaded, settings, box_generator=box_generator)


def main(argv=None):
    import uvicorn

    args = parse_args(argv)
    server = build_server(args)
    print(f"[serve] model {server.limits.model_name!r} on http://{args.host}:{args.port}/v1 (default boxes: "
          f"{server.limits.default_boxes}; API key {'required' if args.api_key else 'off'})", flush=True)
    uvicorn.run(server.app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
