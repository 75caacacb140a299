"""VideoInstruct-100K (Video-ChatGPT's published JSON of {video_id, q, a}) -> one LLaVA-format JSON of video samples
(mg_llava.data_sources.videochatgpt; data_prep/README.md).

    python data_prep/convert_videochatgpt.py VideoInstruct_Dataset.json \
        data/VideoInstruct-100K/videochatgpt_llavaformat_100k.json --video-folder data/VideoInstruct-100K/videos
"""
import argparse
import sys

from tqdm import tqdm

from mg_llava.data_files import read_json_list
from mg_llava.data_sources import convert_videochatgpt, write_llava


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="VideoInstruct-100K's JSON (a list of {video_id, q, a})")
    parser.add_argument("out", help="the LLaVA-format JSON to write")
    parser.add_argument("--video-folder", help="the videos (<video_id>.<ext>): take each file's extension from "
                                               "there and leave out pairs whose video is missing")
    parser.add_argument("--ext", default=".mp4", help="extension without --video-folder (default .mp4)")
    parser.add_argument("--prefix", default="", help="folder put before each video path (relative to the "
                                                     "dataset's video_folder)")
    args = parser.parse_args(argv)
    pairs = read_json_list(args.source, "VideoInstruct-100K file")
    samples, report = convert_videochatgpt(tqdm(pairs, desc="pairs"), source=args.source,
                                           video_folder=args.video_folder, default_ext=args.ext, prefix=args.prefix)
    write_llava(samples, args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
