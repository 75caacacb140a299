"""Export a trained MG-LLaVA (ours or a released checkpoint) to a folder of safetensors.

The equivalent of ``xtuner convert pth_to_hf``, for the whole model: the LLM as a plain transformers folder
(``<out>/llm``), the fusion and both projectors (``<out>/mg_llava_modules.safetensors``) and ``<out>/mg_llava.json``
naming the two vision encoders and the image geometry. Chat and evaluation take the folder as ``--checkpoint``.

    # our stage-2 result, through its training config
    python tools/export.py --config xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py \\
        --checkpoint work_dirs/mg_llava_tiny_cpu_finetune/iter_40.pth --out-dir exported/
    # a released checkpoint
    python tools/export.py --checkpoint mg_llava_vicuna7b_finetune.pth --llm lmsys/vicuna-7b-v1.5 \\
        --visual-encoder openai/clip-vit-large-patch14-336 --visual-encoder-aux convnext_large_d_320 \\
        --visual-encoder-aux-pretrained laion2b_s29b_b131k_ft_soup --template vicuna --out-dir exported/ \\
        --save-dtype bfloat16
"""
import argparse

from mg_llava.inference.cli import add_model_args, load_from_args
from mg_llava.inference.export import export_model
from mg_llava.inference.loading import DTYPES


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export MG-LLaVA to safetensors",
                                     formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--out-dir", required=True, help="new (or empty) folder")
    parser.add_argument("--save-dtype", choices=sorted(DTYPES), help="dtype of the saved weights (default: as loaded)")
    parser.add_argument("--max-shard-size", default="5GB", help="LLM weight shard size")
    args = parser.parse_args(argv)
    args.device = args.device or "cpu"  # saving needs no accelerator
    if args.load_4bit or args.load_8bit or args.device_map is not None:
        parser.error("export writes full-precision weights from one device: --load-4bit, --load-8bit and "
                     "--device-map are for chat, evaluation and serving")
    loaded = load_from_args(args)
    folder = export_model(loaded, args.out_dir, dtype=DTYPES.get(args.save_dtype), max_shard_size=args.max_shard_size)
    print(f"exported to {folder}")
    return folder


if __name__ == "__main__":
    main()
