"""Every dependent field of a training config, derived from its settings (the top-level variables).

mmengine's ``read_base()`` copies a base part's variables into a config, and a dict built in a base part holds the
values its settings had *there*: assigning ``lr = 1e-5`` in a config changes the variable, not ``optim_wrapper``.
So each config of ``xtuner_configs/`` sets only settings and ends with ``derive_settings(globals())``
(``xtuner_configs/_base_/derive.py``), which writes every setting into each part that holds it, by the rules of
:func:`derive_settings`. A setting is then written in one place, and a changed LLM, batch size or lr is one line.

``xtuner train CONFIG --cfg-options lr=1e-4`` changes a setting after the config was parsed; :func:`merge_options`
(installed on mmengine's ``Config.merge_from_dict`` by :mod:`mg_llava.compat`) derives the parts again, so a
setting given on the command line reaches them too. An option on another top-level variable whose value the config
copied into its parts (``data_root``, ``num_frames``, ...) is refused with the fields to set instead, as is a setting
of a config whose parts do not follow its settings (one that sets a part by hand after deriving).
"""
import copy
from typing import List, MutableMapping

# The settings the rules read, with what they decide (for xtuner_configs/README.md and the refusal message).
SETTINGS = {
    "llm_name_or_path": "the tokenizer, the LLM and the sequence check's max_positions (its trained positions)",
    "prompt_template": "the datasets' chat template",
    "visual_encoder_name_or_path": "CLIP and its image processor",
    "visual_encoder_aux_name": "the ConvNeXt model",
    "visual_encoder_aux_pretrained": "the ConvNeXt weights",
    "image_mean": "the image processor and the model's data preprocessor",
    "image_std": "the image processor and the model's data preprocessor",
    "high_res": "the image views and the data preprocessor",
    "low_res": "the image views, the data preprocessor and max_length",
    "patch_size": "max_length and the sequence check's image_tokens (the low-res grid is (low_res // patch_size) ** 2 "
                  "tokens)",
    "context_length": "max_length (context_length - the low-res grid's tokens)",
    "rope_factor": "the LLM's linear RoPE scaling (model.llm.rope_scaling), so the sequence check's max_positions",
    "fusion_type": "the model's fusion",
    "object_tokens": "the model's object features (False: none)",
    "object_merge": "how the model merges object features (None: one appended token per box; a cross-attention "
                    "class of Table 5b)",
    "object_roi_size": "the object features' RoIAlign grid",
    "max_boxes": "the datasets' box limit",
    "box_rule": "the datasets' box rule",
    "resize_on_device": "where the datasets' images are resized",
    "data_path": "the tiny configs' llava_dataset",
    "image_folder": "the tiny configs' llava_dataset",
    "box_file": "the tiny configs' llava_dataset",
    "released_dataset": "the data loader's dataset: the release's one-file layout of a stage (one LLaVA JSON, one box "
                        "JSON, image_folder the data folder) in place of the stage's sources, with the settings they "
                        "share (imported from _base_/datasets/released_*.py)",
    "pretrained_pth": "the model's starting weights (stage 2 onwards)",
    "batch_size": "the data loader, the DeepSpeed micro batch and the length-grouped sampler",
    "accumulative_counts": "gradient accumulation and the length-grouped sampler",
    "lr": "the optimizer",
    "max_epochs": "the training loop and the lr schedule",
    "warmup_ratio": "the lr schedule's warm-up",
    "save_steps": "the checkpoint interval",
    "save_total_limit": "the checkpoints kept",
    "evaluation_freq": "the sample answers' interval",
}


def _type_name(part) -> str:
    """The class name a config dict's ``type`` names (a class, a lazy import or a string)."""
    kind = part.get("type") if isinstance(part, dict) else None
    name = getattr(kind, "_imported", None) or getattr(kind, "__name__", None) or str(kind)
    return name.split(".")[-1]


def _datasets(cfg) -> List[MutableMapping]:
    """The dataset dicts that take the shared dataset settings: the loader's (a single dataset, or the settings a
    mixture hands to its sources) and the tiny configs' ``llava_dataset`` / ``video_dataset``."""
    return [d for d in (cfg.get("llava_dataset"), cfg.get("video_dataset"), cfg["train_dataloader"]["dataset"])
            if d is not None]


# The fields that say where one source's data is: a dataset that replaces a stage's sources (the release's layout)
# brings its own and takes the other fields, the settings the sources share, from the loader's dataset.
SOURCE_FIELDS = ("type", "datasets", "data_path", "image_folder", "video_folder", "box_file",
                 "offline_processed_text_folder", "max_positions", "image_tokens")

# The fields of a dataset's sequence check (mg_llava.dataset.LLaVABoxDataset): a dataset dict asks for the check by
# holding them (``max_positions=None, image_tokens=None``); derive_settings fills them in, and no config writes them.
SEQUENCE_CHECK = ("max_positions", "image_tokens")


def _checked_sources(cfg) -> List[MutableMapping]:
    """The dataset dicts, a mixture's sources among them, that ask for the sequence check."""
    return [source for dataset in _datasets(cfg) for source in (dataset, *(dataset.get("datasets") or ()))
            if any(key in source for key in SEQUENCE_CHECK)]


def derive_settings(cfg: MutableMapping) -> MutableMapping:
    """Write each setting of ``cfg`` (a config's top-level variables, changed in place) into every part that holds
    it, and the derived values (``max_length``) into the top level; returns ``cfg``. Deriving twice changes
    nothing."""
    model, loader = cfg["model"], cfg["train_dataloader"]
    # Model & tokenizer & image processor
    cfg["tokenizer"]["pretrained_model_name_or_path"] = cfg["llm_name_or_path"]
    model["llm"]["pretrained_model_name_or_path"] = cfg["llm_name_or_path"]
    model["visual_encoder"]["pretrained_model_name_or_path"] = cfg["visual_encoder_name_or_path"]
    if model.get("visual_encoder_aux") is not None:
        model["visual_encoder_aux"].update(model_name=cfg["visual_encoder_aux_name"],
                                           pretrained=cfg["visual_encoder_aux_pretrained"])
    model["fusion"]["type"] = cfg["fusion_type"]
    if not cfg["object_tokens"]:
        model["object_features"] = None
    elif model.get("object_features") is not None:
        model["object_features"]["output_size"] = cfg["object_roi_size"]
    if "object_merge" in cfg:
        model["object_merge"] = None if cfg["object_merge"] is None else dict(type=cfg["object_merge"])
    if "pretrained_pth" in cfg:
        model["pretrained_pth"] = cfg["pretrained_pth"]
    if "rope_factor" in cfg:  # positions past the trained ones (an export carries it in the LLM's config)
        model["llm"]["rope_scaling"] = dict(type="linear", factor=cfg["rope_factor"])
    cfg["image_processor"].update(pretrained_model_name_or_path=cfg["visual_encoder_name_or_path"],
                                  image_mean=cfg["image_mean"], image_std=cfg["image_std"])
    cfg["image_views"].update(image_processor=cfg["image_processor"], high_res=cfg["high_res"], low_res=cfg["low_res"])
    model["data_preprocessor"].update(mean=cfg["image_mean"], std=cfg["image_std"], low_res=cfg["low_res"],
                                      high_res=cfg["high_res"])

    # Dataset & dataloader: text tokens are what the LLM's context leaves after the low-res grid
    cfg["max_length"] = cfg["context_length"] - (cfg["low_res"] // cfg["patch_size"]) ** 2
    if "llava_dataset" in cfg:  # the tiny configs' one dataset
        cfg["llava_dataset"].update(data_path=cfg["data_path"], image_folder=cfg["image_folder"],
                                    box_file=cfg["box_file"])
        train = loader["dataset"]
        if "datasets" not in train and "video_folder" not in train:  # the loader reads it (not a mixture/video)
            loader["dataset"] = copy.deepcopy(cfg["llava_dataset"])
    released = cfg.get("released_dataset")
    if released is not None:  # the release's layout: its one dataset reads the stage's data, sharing their settings
        shared = {key: value for key, value in loader["dataset"].items() if key not in SOURCE_FIELDS}
        loader["dataset"] = copy.deepcopy(dict(shared, **released))
    for dataset in _datasets(cfg):
        dataset.update(tokenizer=cfg["tokenizer"], image_views=cfg["image_views"], max_length=cfg["max_length"],
                       resize_on_device=cfg["resize_on_device"])
        dataset["template_map_fn"]["template"] = cfg["prompt_template"]
        for key in ("max_boxes", "box_rule"):  # a model without object tokens has neither
            if key in cfg:
                dataset[key] = cfg[key]
            else:
                dataset.pop(key, None)
    # The sequence check: a sample whose LLM sequence would pass the positions the LLM may use (its trained ones x
    # its RoPE factor; mg_llava.token_budget) is refused, counting the low-res grid's tokens per image or frame
    checked = _checked_sources(cfg)
    if checked:
        from .token_budget import llm_context  # imported late: the model package's reference configs

        positions = llm_context(model["llm"])
        for source in checked:
            source.update(max_positions=positions, image_tokens=(cfg["low_res"] // cfg["patch_size"]) ** 2)
    loader["batch_size"] = cfg["batch_size"]
    if "per_device_batch_size" in loader["sampler"]:  # length-grouped: the samples of one optimizer step
        loader["sampler"]["per_device_batch_size"] = cfg["batch_size"] * cfg["accumulative_counts"]

    # Scheduler & optimizer
    if "strategy" in cfg:  # DeepSpeed: the strategy batches and accumulates
        cfg["strategy"].update(train_micro_batch_size_per_gpu=cfg["batch_size"],
                               gradient_accumulation_steps=cfg["accumulative_counts"])
    else:
        cfg["optim_wrapper"]["accumulative_counts"] = cfg["accumulative_counts"]
    cfg["optim_wrapper"]["optimizer"]["lr"] = cfg["lr"]
    warmup, cosine = cfg["param_scheduler"]
    warmup["end"] = cosine["begin"] = cfg["warmup_ratio"] * cfg["max_epochs"]
    cosine["end"] = cfg["train_cfg"]["max_epochs"] = cfg["max_epochs"]

    # Runtime
    cfg["default_hooks"]["checkpoint"].update(interval=cfg["save_steps"], max_keep_ckpts=cfg["save_total_limit"])
    for hook in cfg.get("custom_hooks", []):
        if _type_name(hook) == "SampleAnswersHook":
            hook["every_n_iters"] = cfg["evaluation_freq"]
    return cfg


def _same(a, b) -> bool:
    """Equal config values; lazy imports (mmengine's ``LazyObject``) are equal when they name the same object."""
    lazy = [v for v in (a, b) if type(v).__name__ in ("LazyObject", "LazyAttr")]
    if lazy:  # LazyObject / LazyAttr compare by identity: compare what they name
        return len(lazy) == 2 and all((type(v).__name__, str(v._module), str(v)) == (type(a).__name__, str(a._module),
                                                                                   str(a)) for v in lazy)
    return a == b


def _differences(a, b, path="") -> List[str]:
    """Dotted paths where two config values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for key in sorted(set(a) | set(b), key=str)
                for p in _differences(a.get(key), b.get(key), f"{path}{key}.")]
    parts_list = isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) \
        and any(isinstance(v, (dict, list, tuple)) for v in (*a, *b))
    if parts_list:  # a list of parts (param_scheduler, custom_hooks); a list of values (a mean) is one field
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in _differences(x, y, f"{path}{i}.")]
    return [] if _same(a, b) else [path.rstrip(".")]


def _raw(value):
    """A config value as plain dicts and lists, its lazy imports left unbuilt (mmengine's ``ConfigDict`` builds them
    on access, and a built class cannot be written out as a config)."""
    if isinstance(value, dict):
        return {key: _raw(v) for key, v in dict.items(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(_raw(v) for v in value)
    return copy.deepcopy(value)


# The config parts the rules write (besides the settings and max_length).
PARTS = ("model", "tokenizer", "image_processor", "image_views", "llava_dataset", "video_dataset", "train_dataloader",
         "strategy", "optim_wrapper", "param_scheduler", "train_cfg", "default_hooks", "custom_hooks", "max_length")


def _parts(cfg) -> dict:
    """A plain copy of what the rules read and write (a parsed config also holds imported modules, which do not
    copy)."""
    return {key: _raw(dict.__getitem__(cfg, key)) for key in (*SETTINGS, *PARTS) if key in cfg}


# Top-level variables that are read as they are after parsing: the runner's (mmengine, XTuner, DeepSpeed strategy)
# and the ones chat, evaluation and export read (mg_llava.dataset.DataSettings, mg_llava.inference.spec).
READ_AS_IS = frozenset((
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg", "test_cfg",
    "val_evaluator", "test_evaluator", "auto_scale_lr", "optim_wrapper", "param_scheduler", "default_hooks",
    "custom_hooks", "data_preprocessor", "load_from", "resume", "launcher", "env_cfg", "log_processor", "log_level",
    "visualizer", "default_scope", "randomness", "experiment_name", "compile", "strategy", "runner_type",
    "model_wrapper_cfg", "tokenizer", "prompt_template", "llava_dataset", "video_dataset",
))


def _follows(cfg) -> bool:
    """Whether ``cfg``'s parts are what the rules derive from its settings (a config of these rules)."""
    parts = _parts(cfg)
    try:
        return not _differences(derive_settings(copy.deepcopy(parts)), parts)
    except (KeyError, TypeError, ValueError, AttributeError):  # not a config of these rules
        return False


def _holding(value, parts, path="") -> List[str]:
    """Dotted fields of ``parts`` whose value is ``value`` (for a string, also those that contain it: a folder
    prefix such as ``data_root``)."""
    if path and (parts == value or isinstance(value, str) and isinstance(parts, str) and len(value) > 2
                 and value in parts):
        return [path.rstrip(".")]
    if isinstance(parts, dict):
        return [p for key, v in parts.items() for p in _holding(value, v, f"{path}{key}.")]
    if isinstance(parts, (list, tuple)):
        return [p for i, v in enumerate(parts) for p in _holding(value, v, f"{path}{i}.")]
    return []


def merge_options(current, options: dict, merge) -> None:
    """``merge(options)`` (mmengine's ``--cfg-options``) for a config of these rules: an option on one of its
    :data:`SETTINGS` derives the parts again (the options' own dotted fields win over the derived ones); an option on
    another top-level variable that nothing reads as it is (:data:`READ_AS_IS`: its value was copied into parts when
    the config was parsed) raises ``ValueError`` naming the fields that hold its value, as does a setting of a config
    whose parts do not follow its settings. ``current()`` returns the config's dict as it is now (``merge`` may
    replace it)."""
    cfg = current()
    roots = {key: key.split(".")[0] for key in options}
    if "released_dataset" in roots.values() and "released_dataset" not in cfg and "train_dataloader" in cfg:
        raise ValueError("--cfg-options released_dataset...: this config reads its recipe's sources, not the release's "
                         "layout; import _base_/datasets/released_pretrain.py (or released_finetune.py) after the "
                         "recipe to read the release's files (data_prep/README.md)")
    settings = sorted(key for key, root in roots.items() if root in SETTINGS and root in cfg)
    copied = sorted(key for key, root in roots.items() if root not in SETTINGS and root not in READ_AS_IS and root in cfg)
    if not (settings or copied) or "train_dataloader" not in cfg:
        merge(options)
        return
    follows = _follows(cfg)
    if copied and follows:
        parts = {key: _raw(dict.__getitem__(cfg, key)) for key in READ_AS_IS if key in cfg}
        named = [f"{key} (now held by: {', '.join(_holding(cfg[roots[key]], parts)[:8]) or 'no part'})"
                 for key in copied]
        raise ValueError(
            f"--cfg-options {', '.join(named)}: a top-level variable this config copied into its parts when it was "
            f"parsed; changing it now changes nothing it builds. Set those fields instead (dotted options), or one "
            f"of the settings the parts are derived from: {', '.join(sorted(k for k in SETTINGS if k in cfg))}")
    if not settings:
        merge(options)
        return
    merge(options)
    if not follows:
        changed = _parts(current())
        try:
            paths = [p for p in _differences(derive_settings(copy.deepcopy(changed)), changed) if p not in SETTINGS]
        except (KeyError, TypeError, ValueError, AttributeError):
            paths = []
        raise ValueError(
            f"--cfg-options {', '.join(settings)}: this config's parts do not follow its top-level settings (it "
            f"sets some by hand), so the top-level variable would change nothing it builds; set the fields that "
            f"use it instead" + (f": {', '.join(paths)}" if paths else ""))
    derived = derive_settings(_parts(current()))
    cfg = current()
    for key in PARTS:
        if key in derived:
            cfg[key] = derived[key]
    merge({k: v for k, v in options.items() if k not in settings})  # explicit fields win over the derived ones


__all__ = ["READ_AS_IS", "SEQUENCE_CHECK", "SETTINGS", "SOURCE_FIELDS", "derive_settings", "merge_options"]
