"""Video-LLaVA's training JSONs (valley_.json: the 703K video captions; videochatgpt_tune_.json; their mixes with
LLaVA's images) -> one LLaVA-format JSON this project reads (mg_llava.data_sources.video_llava; data_prep/README.md).

    python data_prep/convert_video_llava.py train_json/valley_.json data/Video-LLaVA/valley_703k.json
"""
import argparse
import sys

from tqdm import tqdm

from mg_llava.data_files import read_json_list
from mg_llava.data_sources import convert_video_llava, write_llava


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="Video-LLaVA JSON files, converted together (ids unique over all)")
    parser.add_argument("out", help="the LLaVA-format JSON to write")
    parser.add_argument("--video-prefix", default="", help="folder put before each video path")
    parser.add_argument("--image-prefix", default="", help="folder put before each image path")
    args = parser.parse_args(argv)
    items = [item for path in args.sources for item in read_json_list(path, "Video-LLaVA training file")]
    samples, report = convert_video_llava(tqdm(items, desc="items"), source=", ".join(args.sources),
                                          video_prefix=args.video_prefix, image_prefix=args.image_prefix)
    write_llava(samples, args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
