"""Build the tiny CPU default: offline tiny checkpoints and the bundled photo dataset.

    python tools/build_tiny_assets.py [OUT_DIR]     (default: work_dirs/tiny_assets, what the tiny configs read)

Writes OUT_DIR/models/{clip,clip_deep,convnext,owlv2,llm_vicuna,llm_llama3,llm_phi3,llm_yi} and OUT_DIR/data/{images/,
pretrain.json, finetune.json, boxes.json} plus the tiny videos: OUT_DIR/data/{videos/, video_pretrain.json,
video_finetune.json, video_boxes.json, video_qa.jsonl, video_qa_boxes.json} and the frame-order clips the tiny video
configs train on: OUT_DIR/data/{order_videos/, order_pretrain.json, order_finetune.json, order_boxes.json, order_qa*}.
Folders already complete are kept.
"""
import argparse
import os.path as osp

from mg_llava.testing.frame_order_dataset import build_frame_order_dataset
from mg_llava.testing.tiny_dataset import build_tiny_dataset
from mg_llava.testing.tiny_models import build_all
from mg_llava.testing.tiny_video_dataset import build_tiny_video_dataset


def build_tiny_assets(out_dir: str) -> dict:
    models = build_all(osp.join(out_dir, "models"))
    data = build_tiny_dataset(osp.join(out_dir, "data"))
    data.update(build_tiny_video_dataset(osp.join(out_dir, "data")))
    data.update(build_frame_order_dataset(osp.join(out_dir, "data")))
    return {"models": models, "data": data}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default="work_dirs/tiny_assets")
    args = parser.parse_args(argv)
    paths = build_tiny_assets(args.out_dir)
    for group, items in paths.items():
        for name, path in items.items():
            print(f"{group}/{name}: {path}")


if __name__ == "__main__":
    main()
