"""Convert a released MG-LLaVA checkpoint (SPEC 4 keys) into this project's trainable-weight checkpoint.

    python tools/convert_released_checkpoint.py SRC DST [--dtype keep|float32|bfloat16|float16]

SRC is a plain state dict, an mmengine checkpoint (``{'state_dict': ...}``, ``module.`` prefixes allowed) or a
DeepSpeed checkpoint folder (``latest`` + ``<tag>/mp_rank_00_model_states.pt``). DST is an mmengine-style
``{'meta': ..., 'state_dict': ...}`` file with our key names (identical to SPEC 4): pass it as ``pretrained_pth``
of ``MGLLaVAModel``. The shapes are checked against SPEC 4 and summarised.
"""
import argparse
import json

import torch

from mg_llava.model.checkpoint import describe_released, load_trainable_state_dict

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def convert(src: str, dst: str, dtype: str = "keep") -> dict:
    state_dict = load_trainable_state_dict(src)
    summary = describe_released(state_dict)
    if dtype != "keep":
        state_dict = {k: v.to(DTYPES[dtype]) for k, v in state_dict.items()}
    torch.save(dict(meta=dict(source=src, converted_by="tools/convert_released_checkpoint.py", **summary),
                    state_dict=state_dict), dst)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="released .pth file, mmengine checkpoint or DeepSpeed checkpoint folder")
    parser.add_argument("dst", help="output .pth")
    parser.add_argument("--dtype", default="keep", choices=["keep", *DTYPES])
    args = parser.parse_args(argv)
    summary = convert(args.src, args.dst, args.dtype)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.dst}")


if __name__ == "__main__":
    main()
