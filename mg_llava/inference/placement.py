"""Where the LLM's weights live at inference: quantised on a GPU, split across GPUs, offloaded to CPU memory or disk.

A 7B LLM in bf16 needs ~14 GB, Yi-1.5-34B ~70 GB: more than one GPU holds. :class:`LLMPlacement` turns the options of
chat, evaluation, the web demo, the server and the lmms-eval model into ``from_pretrained`` arguments, so the LLM
is loaded by transformers + accelerate (``device_map``, ``max_memory``, ``offload_folder``) and bitsandbytes
(``BitsAndBytesConfig``: NF4 with double quantisation and bf16 compute for 4 bits, LLM.int8 for 8 bits). The vision
side (encoders, fusion, projectors, router) is small and goes whole to the device the LLM reads its input
embeddings on (bf16 when the LLM is quantised).

4-bit and 8-bit loading needs CUDA (bitsandbytes' kernels): without a GPU the options are refused before anything
is loaded.
"""
import re
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class PlacementError(ValueError):
    """Options that cannot place the LLM (named in the message)."""


def parse_max_memory(text: Optional[str]) -> Optional[Dict[Union[int, str], int]]:
    """``"0=20GiB,1=20GiB,cpu=60GiB"`` -> ``{0: 21474836480, 1: ..., "cpu": ...}`` (bytes; a bare number is bytes).
    Keys: a GPU index or ``cpu``. Pairs are separated by commas or semicolons (lmms-eval's ``--model_args`` splits
    on commas: ``max_memory=0=20GiB;cpu=60GiB`` there)."""
    if text is None:
        return None
    out: Dict[Union[int, str], int] = {}
    for part in (p for p in re.split(r"[,;]", text) if p.strip()):
        key, sep, size = part.partition("=")
        key = key.strip().lower()
        match = _SIZE.match(size)
        if not sep or match is None or not (key.isdigit() or key == "cpu"):
            raise PlacementError(f"--max-memory: cannot read {part.strip()!r}; write DEVICE=SIZE pairs separated by "
                                 f"commas, e.g. 0=20GiB,1=20GiB,cpu=60GiB")
        unit = match.group(2).lower() if match.group(2) else None
        out[int(key) if key.isdigit() else key] = int(float(match.group(1)) * _UNITS[unit])
    if not out:
        raise PlacementError("--max-memory is empty")
    return out


@dataclass
class LLMPlacement:
    """How to load the LLM. ``device_map`` is one of :data:`DEVICE_MAPS` or a dict (module name -> device)."""

    load_in_4bit: bool = False
    load_in_8bit: bool = False
    device_map: Optional[Union[str, dict]] = None
    max_memory: Optional[Dict[Union[int, str], int]] = None
    offload_folder: Optional[str] = None

    def __post_init__(self):
        if self.load_in_4bit and self.load_in_8bit:
            raise PlacementError("--load-4bit and --load-8bit exclude each other")
        if isinstance(self.device_map, str) and self.device_map not in DEVICE_MAPS:
            raise PlacementError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, got {self.device_map!r}")
        if (self.max_memory is not None or self.offload_folder is not None) and self.device_map is None:
            raise PlacementError("--max-memory and --offload-folder take effect with --device-map (e.g. auto)")

    @property
    def quantised(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit

    @property
    def active(self) -> bool:
        return self.quantised or self.device_map is not None

    def check(self) -> None:
        """Refuse what this machine cannot do, before anything is loaded."""
        if self.quantised and not torch.cuda.is_available():
            bits = 4 if self.load_in_4bit else 8
            raise PlacementError(f"--load-{bits}bit needs a CUDA GPU (bitsandbytes' {bits}-bit kernels); none is "
                                 f"visible here. Load in full precision, or use --device-map auto --max-memory ... "
                                 f"--offload-folder DIR to offload to CPU memory and disk")

    def llm_kwargs(self, device: Optional[torch.device] = None) -> dict:
        """``from_pretrained`` arguments for the LLM (none when the placement is the default)."""
        self.check()
        kwargs: dict = {}
        if self.quantised:
            from transformers import BitsAndBytesConfig

            if self.load_in_4bit:
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.bfloat16)
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["torch_dtype"] = torch.bfloat16
        device_map = self.device_map
        if device_map is None and self.quantised:  # bitsandbytes places the weights as it loads them
            device_map = {"": str(device) if device is not None and torch.device(device).type == "cuda" else
                          f"cuda:{torch.cuda.current_device()}"}
        if device_map is not None:
            kwargs["device_map"] = device_map
        if self.max_memory is not None:
            kwargs["max_memory"] = dict(self.max_memory)
        if self.offload_folder is not None:
            kwargs.update(offload_folder=self.offload_folder, offload_state_dict=True)
        return kwargs


def llm_input_device(llm) -> torch.device:
    """The device the LLM's input embeddings run on: the device the vision side must give its tokens on.

    Under accelerate's dispatch, modules mapped to ``cpu`` or ``disk`` run on the main device (the first GPU of the
    map, else the CPU); modules on a GPU run there."""
    device_map = getattr(llm, "hf_device_map", None)
    embed = llm.get_input_embeddings()
    if not device_map:
        return embed.weight.device
    gpus = [d for d in device_map.values() if d not in ("cpu", "disk")]
    main = torch.device("cpu") if not gpus else torch.device("cuda", gpus[0]) if isinstance(gpus[0], int) \
        else torch.device(gpus[0])
    if embed.weight.device.type == "meta" and not hasattr(embed, "_hf_hook"):
        raise PlacementError(f"the device map {device_map} leaves the LLM's input embeddings without weights (they "
                             f"are offloaded as part of a larger block); give the first devices in --max-memory "
                             f"room for at least the embeddings")
    return embed.weight.device if embed.weight.device.type not in ("cpu", "meta") else main


def place_vision_side(model, device: torch.device, dtype: Optional[torch.dtype]) -> None:
    """Every submodule but the LLM to ``device`` (and ``dtype``), leaving the dispatched LLM where accelerate put
    it."""
    for name, child in model.named_children():
        if name != "llm":
            child.to(device=device, dtype=dtype)
    for param in model.parameters(recurse=False):
        param.data = param.data.to(device=device, dtype=dtype or param.dtype)


__all__ = ["DEVICE_MAPS", "LLMPlacement", "PlacementError", "llm_input_device", "parse_max_memory",
           "place_vision_side"]
