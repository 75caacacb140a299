"""A web page to chat with MG-LLaVA about an uploaded image or video (gradio; `pip install -e .[web]`).

    # the tiny model `make demo` trains (CPU), as `make web-demo` runs it: the tiny photos' box file, boxes found
    # by the tiny (random) OWLv2 for any other photo
    python tools/web_demo.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \\
        --checkpoint work_dirs/mg_llava_tiny_cpu_finetune/iter_40.pth --boxes work_dirs/tiny_assets/data/boxes.json \\
        --detector work_dirs/tiny_assets/models/owlv2 --tagger fixed --score-threshold 0
    # an exported folder, boxes found on the fly for every upload, behind a password
    python tools/web_demo.py --checkpoint exported/ --detector google/owlv2-large-patch14-ensemble \\
        --tagger-model ram_plus_swin_large_14m.pth --auth alice:secret

The model options are tools/chat.py's (config + checkpoint, an exported folder, or a released checkpoint with its
model paths); so are the box options: --boxes is the box file used when the page gives none, --detector/--tagger
find boxes on the fly (by default for an upload the box file has no entry for). Open the printed URL; the page
shows a message, not a crash, for bad uploads and for a model that fails to load.
"""
import argparse
import sys

from mg_llava.inference.cli import add_box_generator_args, add_model_args, build_box_generator, load_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="MG-LLaVA web demo", formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--boxes", help="box file (released format) for uploads when the page gives none")
    add_box_generator_args(parser)
    parser.add_argument("--num-frames", type=int, help="frames sampled from a video (default: the training "
                                                        "config's, 8 for the released models)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--auth", type=user_password, metavar="USER:PASSWORD",
                        help="ask for this user name and password before showing the page")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="answers generated at once (others wait in the queue; default 1: one model)")
    return parser.parse_args(argv)


def user_password(text: str):
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("give USER:PASSWORD, both non-empty")
    return user, password


def build_demo(args):
    """The :class:`~mg_llava.web.WebDemo` for ``args``; a model that fails to load becomes a message in the page."""
    from mg_llava.web import WebDemo

    settings = dict(boxes=args.boxes, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_p=args.top_p)
    try:
        loaded = load_from_args(args)
        if args.num_frames is not None:
            loaded.preprocessor.num_frames = args.num_frames
        box_generator = build_box_generator(args, loaded.device, loaded.preprocessor.box_rule)
    except (SystemExit, Exception) as err:  # noqa: B902 - every load failure is shown in the page
        message = str(err) or type(err).__name__
        print(f"[web demo] the model did not load: {message}", file=sys.stderr, flush=True)
        return WebDemo(load_error=message, **settings)
    return WebDemo(loaded, box_generator=box_generator, **settings)


def main(argv=None):
    args = parse_args(argv)
    page = build_demo(args).build(concurrency=args.concurrency)
    page.launch(server_name=args.host, server_port=args.port, share=args.share, auth=args.auth, show_error=True,
                ssr_mode=False)


if __name__ == "__main__":
    main()
