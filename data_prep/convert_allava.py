"""ALLaVA-4V's caption or instruction files -> one LLaVA-format JSON with image paths relative to data/ of the
release's tree (mg_llava.data_sources.allava; data_prep/README.md).

    python data_prep/convert_allava.py ALLaVA-4V/allava_laion/ALLaVA-Caption-LAION-4V.json \
        ALLaVA-4V/allava_vflan/ALLaVA-Caption-VFLAN-4V.json data/ALLaVA/allava_caption_708k.json
"""
import argparse
import os.path as osp
import sys

from tqdm import tqdm

from mg_llava.data_files import read_json_list
from mg_llava.data_sources import convert_allava, write_llava
from mg_llava.data_sources.allava import SOURCES, source_of


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="ALLaVA JSON files, converted together (ids unique over all)")
    parser.add_argument("out", help="the LLaVA-format JSON to write")
    parser.add_argument("--source", choices=SOURCES, help="the folder under data/ of every file (default: from each "
                                                          "file's name, LAION or VFLAN)")
    args = parser.parse_args(argv)
    files = [(path, args.source or source_of(osp.basename(path)), read_json_list(path, "ALLaVA file"))
             for path in args.sources]
    samples, report = convert_allava((name, source, tqdm(items, desc=osp.basename(name)))
                                     for name, source, items in files)
    write_llava(samples, args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
