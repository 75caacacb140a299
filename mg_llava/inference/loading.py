"""Build a trained MG-LLaVA for inference: from a training config, from model paths, or from an exported folder.

Every route ends in a :class:`LoadedModel`: the model (eval mode), its tokenizer, a :class:`Preprocessor` with the
training config's image views, box rules and prompt template, and a *spec* (:mod:`.spec`), which
:mod:`.export` writes next to the weights. The jobs live in their own modules: :mod:`.spec` (the spec schema),
:mod:`.build` (a model from a spec), :mod:`.weights` (checkpoints and an export's files, read before any model is
built); this module joins them.

Checkpoints (our ``state_dict()`` files, stock mmengine/XTuner training checkpoints, DeepSpeed folders, the released
``.pth`` files) load through :meth:`MGLLaVAModel.load_trainable`, i.e. the restricted unpickler of
:mod:`mg_llava.safe_load`, which runs nothing a file names. A file it refuses (one that names e.g. ``os.system``) is
refused with :class:`UnsafeCheckpointError` unless ``allow_unsafe_pickle=True`` is passed explicitly
(``--allow-unsafe-pickle``): full unpickling runs code from the file. ``trust_remote_code`` (for LLMs with custom
code) is likewise off unless asked for.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from transformers import AutoTokenizer

from mg_llava.dataset import NUM_FRAMES, PROMPT_TEMPLATE, DataSettings
from mg_llava.model import MGLLaVAModel
from mg_llava.registry import build as build_module

from .build import build_from_spec
from .placement import LLMPlacement, PlacementError, llm_input_device, place_vision_side
from .preprocess import Preprocessor
from .spec import check_model_paths, spec_from_config, views_from_spec
from .weights import MODULES_FILE, load_state_dict_checked, load_vision_modules, read_checkpoint, read_export

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: MGLLaVAModel
    tokenizer: object
    preprocessor: Preprocessor
    spec: dict
    device: torch.device


def default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under torchrun, so sharded evaluation uses every GPU), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def finish(model: MGLLaVAModel, tokenizer, spec: dict, device=None, dtype: Optional[str] = None,
           system: Optional[str] = None, box_rule: Optional[str] = None,
           placement: Optional[LLMPlacement] = None) -> LoadedModel:
    """Device, dtype and the preprocessor; ``box_rule`` overrides the spec's (the rule the model was trained with:
    the config's, the export's, or 'released' for a released checkpoint loaded from paths). With an active
    ``placement`` the LLM stays where it was loaded and the rest of the model goes to its input device."""
    boxes = dict(spec["boxes"])
    boxes.setdefault("rule", "clean")  # exports written before the rule was recorded
    if box_rule is not None:
        boxes["rule"] = box_rule
    spec = dict(spec, boxes=boxes)
    print_log(f"box rule: {spec['boxes']['rule']}", "current")
    if placement is not None and placement.active:
        placed = llm_input_device(model.llm)
        if device is not None and torch.device(device) != placed:
            raise PlacementError(f"--device {device} differs from the device the placed LLM reads its inputs on "
                                 f"({placed}); leave --device out with --device-map / --load-4bit / --load-8bit")
        device = placed
        vision_dtype = torch.bfloat16 if placement.quantised else DTYPES[dtype] if dtype is not None else None
        place_vision_side(model, device, vision_dtype)
        model.eval()
        print_log(f"LLM placement: {getattr(model.llm, 'hf_device_map', {'': str(device)})}; vision side on "
                  f"{device}", "current")
    else:
        device = torch.device(device) if device is not None else default_device()
        if dtype is not None:
            model.to(DTYPES[dtype])
        model.to(device).eval()
    model.is_first_iter = False  # XTuner's first-forward device move is done
    preprocessor = Preprocessor(tokenizer, PROMPT_TEMPLATE[spec["prompt_template"]], views_from_spec(spec["image"]),
                                max_boxes=spec["boxes"]["max_boxes"], iou_threshold=spec["boxes"]["iou_threshold"],
                                system=system, box_rule=spec["boxes"]["rule"],
                                num_frames=spec.get("video", {}).get("num_frames", NUM_FRAMES))
    return LoadedModel(model, tokenizer, preprocessor, spec, device)


def _llm_kwargs(placement: Optional[LLMPlacement], dtype: Optional[str], device) -> dict:
    """``from_pretrained`` arguments for a placed LLM (empty without a placement)."""
    if placement is None or not placement.active:
        return {}
    if placement.quantised and dtype not in (None, "bfloat16"):
        raise PlacementError(f"--dtype {dtype} with a quantised LLM: its compute dtype is bfloat16, the vision side "
                             f"runs in bfloat16 too; leave --dtype out")
    kwargs = placement.llm_kwargs(device)
    if dtype is not None and not placement.quantised:
        kwargs["torch_dtype"] = DTYPES[dtype]
    return kwargs


def _check_no_llm_weights(state_dict: Optional[dict], checkpoint: Optional[str], placement) -> None:
    """A placed LLM gets its weights from ``from_pretrained``; a checkpoint that holds LLM weights (full stage 2,
    LoRA) must be exported first, so that the weights are in the LLM folder the placement loads."""
    if state_dict is None or placement is None or not placement.active:
        return
    llm_keys = [k for k in state_dict if k.startswith("llm.")]
    if llm_keys:
        raise PlacementError(f"{checkpoint} holds {len(llm_keys)} LLM weights (e.g. {llm_keys[0]}); with "
                             f"--device-map / --load-4bit / --load-8bit the LLM loads from a folder: export the "
                             f"model first (python tools/export.py --config ... --checkpoint ... --out-dir DIR) and "
                             f"load DIR")


def load_from_config(config: str, checkpoint: Optional[str], allow_unsafe_pickle: bool = False,
                     cfg_options: Optional[dict] = None, **kwargs) -> LoadedModel:
    """The model, tokenizer, views and template of a training config, with ``checkpoint``'s weights.
    ``cfg_options`` overrides the config's settings (``--cfg-options``, as ``xtuner train`` merges them)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    spec = spec_from_config(cfg)
    state_dict = read_checkpoint(checkpoint, allow_unsafe_pickle) if checkpoint is not None else None
    placement = kwargs.get("placement")
    _check_no_llm_weights(state_dict, checkpoint, placement)
    llm_kwargs = _llm_kwargs(placement, kwargs.get("dtype"), kwargs.get("device"))
    model_cfg = cfg.model.copy()
    model_cfg.update(pretrained_pth=None, use_activation_checkpointing=False)
    if llm_kwargs:  # the placement's quantisation replaces a QLoRA config's
        model_cfg.llm = {k: v for k, v in model_cfg.llm.items() if k not in ("quantization_config", "torch_dtype")}
        model_cfg.llm.update(llm_kwargs)
    model = build_module(model_cfg)
    if state_dict is not None:
        load_state_dict_checked(model, state_dict, checkpoint)
    tokenizer = build_module(DataSettings.from_config(cfg).tokenizer)  # the one the spec's settings come with
    return finish(model, tokenizer, spec, **kwargs)


def load_from_spec(spec: dict, checkpoint: Optional[str], allow_unsafe_pickle: bool = False,
                   trust_remote_code: bool = False, **kwargs) -> LoadedModel:
    state_dict = read_checkpoint(checkpoint, allow_unsafe_pickle) if checkpoint is not None else None
    _check_no_llm_weights(state_dict, checkpoint, kwargs.get("placement"))
    check_model_paths(spec)
    model = build_from_spec(spec, trust_remote_code=trust_remote_code,
                            llm_kwargs=_llm_kwargs(kwargs.get("placement"), kwargs.get("dtype"), kwargs.get("device")))
    if state_dict is not None:
        load_state_dict_checked(model, state_dict, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(spec["llm"], trust_remote_code=trust_remote_code)
    return finish(model, tokenizer, spec, **kwargs)


def load_exported(folder: str, trust_remote_code: bool = False, **kwargs) -> LoadedModel:
    """A folder written by :func:`mg_llava.inference.export.export_model` (safetensors only, no pickle)."""
    spec, modules = read_export(folder)
    model = build_from_spec(spec, trust_remote_code=trust_remote_code,
                            llm_kwargs=_llm_kwargs(kwargs.get("placement"), kwargs.get("dtype"), kwargs.get("device")))
    load_vision_modules(model, modules, osp.join(folder, MODULES_FILE))
    tokenizer = AutoTokenizer.from_pretrained(spec["llm"], trust_remote_code=trust_remote_code)
    return finish(model, tokenizer, spec, **kwargs)
