"""Chat with a trained MG-LLaVA about an image or a video (or without either), streaming the answers.

    # our training run, through its config
    python tools/chat.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \\
        --checkpoint work_dirs/mg_llava_tiny_cpu_finetune/iter_40.pth \\
        --image work_dirs/tiny_assets/data/images/chelsea.jpg --boxes work_dirs/tiny_assets/data/boxes.json
    # a released checkpoint, with boxes found on the fly
    python tools/chat.py --checkpoint mg_llava_vicuna7b_finetune.pth --llm lmsys/vicuna-7b-v1.5 \\
        --visual-encoder openai/clip-vit-large-patch14-336 --visual-encoder-aux convnext_large_d_320 \\
        --visual-encoder-aux-pretrained laion2b_s29b_b131k_ft_soup --template vicuna --image photo.jpg \\
        --detector google/owlv2-large-patch14-ensemble --tagger-model ram_plus_swin_large_14m.pth
    # an exported folder, text only
    python tools/chat.py --checkpoint exported/
    # a video (file or frames folder): the training config's frame count, per-frame boxes from a video box file
    python tools/chat.py --checkpoint exported/ --video clip.mp4 --boxes clip_boxes.json

Without --prompt it reads questions from stdin ('reset' clears the history, 'exit' or EOF quits). With one or more
--prompt it asks those in order (multi-turn) and exits. Greedy decoding unless --temperature > 0.
"""
import argparse
import os.path as osp
import sys

from transformers import TextStreamer

from mg_llava.dataset import MissingBoxEntryError, entry_for_file, load_box_file
from mg_llava.inference.chat import ChatSession
from mg_llava.inference.cli import add_box_generator_args, add_model_args, build_box_generator, load_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Chat with MG-LLaVA", formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--image", help="image file; omit for text-only chat")
    parser.add_argument("--video", help="video file or frames folder (instead of --image)")
    parser.add_argument("--num-frames", type=int, help="frames sampled from --video (default: the training "
                                                        "config's, 8 for the released models)")
    parser.add_argument("--boxes", help="box file (released format) holding the image's (video's per-frame) boxes")
    parser.add_argument("--box-id", help="id of the image's entry in --boxes (default: the only entry, else the "
                                         "image's file name without extension); for --video the video entry's id "
                                         "or video path (default: the only video entry, else the file name)")
    parser.add_argument("--no-boxes", action="store_true", help="use the image without object boxes")
    add_box_generator_args(parser)
    parser.add_argument("--prompt", action="append", help="a question to ask (repeat for several turns)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    return parser.parse_args(argv)


def box_source(args, device, box_rule="clean"):
    """What the session's boxes come from; ``box_rule`` is the model's (boxes found on the fly are made for it)."""
    if args.image is None and args.video is None:
        return None
    chosen = [name for name, value in (("--boxes", args.boxes), ("--detector", args.detector),
                                       ("--no-boxes", args.no_boxes)) if value]
    if len(chosen) != 1:
        raise SystemExit(f"with --image or --video, give exactly one of --boxes, --detector (boxes found on the "
                         f"fly) or --no-boxes; got {chosen or 'none'}")
    if args.no_boxes:
        return None
    if args.detector is not None:
        return build_box_generator(args, device, box_rule)
    table = load_box_file(args.boxes)
    video = args.video is not None
    path = args.video if video else args.image
    try:  # --box-id, the only (video) entry, or the file's name
        return table, entry_for_file(table, path, args.box_id, video=video)
    except MissingBoxEntryError as err:
        raise SystemExit(f"{args.boxes} has no {'video ' if video else ''}entry {err.wanted!r} for {path}; "
                         f"pass --box-id") from None


def main(argv=None):
    args = parse_args(argv)
    if args.image is not None and args.video is not None:
        raise SystemExit("give --image or --video, not both")
    if args.image is not None and not osp.isfile(args.image):
        raise SystemExit(f"image not found: {args.image}")
    if args.video is not None and not osp.exists(args.video):
        raise SystemExit(f"video not found: {args.video}")
    loaded = load_from_args(args)
    if args.num_frames is not None:
        loaded.preprocessor.num_frames = args.num_frames
    boxes = box_source(args, loaded.device, loaded.preprocessor.box_rule)
    streamer = TextStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    session = ChatSession(loaded, image=args.image, boxes=boxes, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, streamer=streamer, video=args.video)
    if args.image is not None:
        print(f"[image {args.image}: {session.num_boxes} object boxes]", flush=True)
    if args.video is not None:
        print(f"[video {args.video}: frames {session.video.indices}, {session.num_boxes} object boxes]", flush=True)
    questions = iter(args.prompt) if args.prompt else None
    answers = []
    while True:
        if questions is not None:
            question = next(questions, None)
            if question is None:
                break
            print(f"USER: {question}\nASSISTANT: ", end="", flush=True)
        else:
            try:
                question = input("USER: ").strip()
            except EOFError:
                break
            if question == "exit":
                break
            if question == "reset":
                session.reset()
                continue
            if not question:
                continue
            print("ASSISTANT: ", end="", flush=True)
        answers.append(session.ask(question))
        if session.image is not None:
            count = session.last_visual_tokens
            tiles = count.get("tile_tokens", 0)
            tiled = f"{tiles} tile + " if "tile_tokens" in count else ""
            print(f"[visual tokens: {count['visual_tokens']} (grid {count['granularity'][0]} + {tiled}"
                  f"{count['visual_tokens'] - count['granularity'][0] - tiles} object)]", flush=True)
        sys.stdout.flush()
    return answers


if __name__ == "__main__":
    main()
