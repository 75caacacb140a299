"""Draw boxes and labels on N samples into one grid PNG, from a box file or by running the detector now.

    python data_prep/draw_boxes.py --data llava.json --image-folder data/ --boxes work_dirs/boxes/boxes.json \
        --num 16 --out grid.png
    python data_prep/draw_boxes.py --data new_dataset.jsonl --image-folder imgs/ --tagger clip --num 8 --out check.png
"""
from mg_llava.boxgen.cli import draw_main

if __name__ == "__main__":
    draw_main()
