"""Export the whole model to a folder of safetensors (the released ``pth_to_hf`` kept only the LLM).

Layout::

    <folder>/mg_llava.json                 how to rebuild: the two vision encoders (paths/names, select layer),
                                           fusion and object-feature settings, image geometry, box rules, template;
                                           for AVG-LLaVA its scaler and router settings (``avg_llava``)
    <folder>/mg_llava_modules.safetensors  fuse_module.*, projector.*, bbox_projector.* (SPEC 4 key names); an
                                           AVG-LLaVA's router.* and a tiled model's
                                           anyres.image_newline too
    <folder>/llm/                          a plain transformers folder (config, safetensors weights, tokenizer):
                                           AutoModelForCausalLM.from_pretrained(<folder>/llm) works

The vision encoders are frozen and never change, so they are referenced, not copied. Load the folder back with
:func:`mg_llava.inference.load_exported` (or pass it as ``--checkpoint`` to the tools).
"""
import json
import os
import os.path as osp

import torch
from mmengine.logging import print_log
from safetensors.torch import save_file

from mg_llava.model.checkpoint import ANYRES_PREFIXES, LLM_PREFIXES, ROUTER_PREFIXES
from mg_llava.registry import MODELS, WHOLE_MODEL_EXPORT, build

from .loading import LoadedModel
from .spec import spec_from_config
from .weights import LLM_DIR, MODULES_FILE, SPEC_FILE, vision_prefixes


def export_model(loaded: LoadedModel, folder: str, dtype: torch.dtype = None, max_shard_size: str = "5GB") -> str:
    """Write ``loaded`` to ``folder`` (created; must be empty if it exists); returns the folder."""
    prefixes = vision_prefixes(loaded.model)
    for (prefix,), key in ((ROUTER_PREFIXES, "avg_llava"), (ANYRES_PREFIXES, "anyres")):
        if prefix in prefixes and not loaded.spec.get(key):
            raise ValueError(f"{type(loaded.model).__name__} needs the spec's {key} settings to be rebuilt; load it "
                             f"from its training config")
    if osp.isdir(folder) and os.listdir(folder):
        raise FileExistsError(f"{folder} exists and is not empty")
    os.makedirs(folder, exist_ok=True)
    model = loaded.model
    llm = model.llm
    if getattr(model, "use_llm_lora", False):
        llm = llm.merge_and_unload()  # a plain LLM: the adapters folded into its weights
    if dtype is not None:
        llm = llm.to(dtype)
    llm.save_pretrained(osp.join(folder, LLM_DIR), safe_serialization=True, max_shard_size=max_shard_size)
    loaded.tokenizer.save_pretrained(osp.join(folder, LLM_DIR))

    modules = {k: v.detach().to("cpu", dtype or v.dtype).contiguous()
               for k, v in torch.nn.Module.state_dict(model).items() if k.startswith(prefixes)}
    save_file(modules, osp.join(folder, MODULES_FILE), metadata={"format": "pt"})
    spec = dict(loaded.spec, llm=LLM_DIR)
    with open(osp.join(folder, SPEC_FILE), "w") as f:
        json.dump(spec, f, indent=2)
    return folder


@MODELS.register_module(name=WHOLE_MODEL_EXPORT)
def export_for_xtuner(model, cfg, save_dir: str, fp32: bool = False, save_pretrained_kwargs=None,
                      save_format: str = "xtuner") -> str:
    """``MGLLaVAModel.to_hf`` (``xtuner convert pth_to_hf``): ``model`` with the weights XTuner loaded, exported
    like :func:`export_model` with the training config's spec; fp16 unless ``fp32``."""
    if save_format != "xtuner":
        raise ValueError(f"save_format={save_format!r}: MG-LLaVA exports only its own (whole-model) format")
    if any(p.is_meta for name, p in model.named_parameters() if name.startswith(LLM_PREFIXES + vision_prefixes(model))):
        raise ValueError("parts of the model hold no weights (a stage-1 checkpoint has no LLM): export a stage-2 "
                         "checkpoint, or use tools/export.py, which loads the base LLM")
    loaded = LoadedModel(model, build(cfg.tokenizer), None, spec_from_config(cfg), torch.device("cpu"))
    max_shard_size = (save_pretrained_kwargs or {}).get("max_shard_size", "5GB")
    export_model(loaded, save_dir, dtype=None if fp32 else torch.float16, max_shard_size=max_shard_size)
    print_log(f"Exported the whole MG-LLaVA model to {save_dir}", "current")
    return save_dir
