"""Merge the shards of a box generation run into OUT_DIR/boxes.json and write summary.json + a histogram PNG.

    python data_prep/merge_boxes.py --out-dir work_dirs/boxes_665k
"""
from mg_llava.boxgen.cli import merge_main

if __name__ == "__main__":
    merge_main()
