"""Build a trained MG-LLaVA for inference: from a training config, from model paths, or from an exported folder.

Every route ends in a :class:`LoadedModel`: the model (eval mode), its tokenizer, a :class:`Preprocessor` with the
training config's image views, box rules and prompt template, and a *spec*: a JSON-able description of how to build
the model again (LLM path, vision encoder references, fusion and object-feature settings, image geometry, box rules,
template name), which :mod:`.export` writes next to the weights.

Checkpoints (our ``state_dict()`` files, stock mmengine/XTuner training checkpoints, DeepSpeed folders, the released
``.pth`` files) load through :meth:`MGLLaVAModel.load_trainable`, i.e. the restricted unpickler of
:mod:`mg_llava.safe_load`, which runs nothing a file names. A file it refuses (one that names e.g. ``os.system``) is
refused with :class:`UnsafeCheckpointError` unless ``allow_unsafe_pickle=True`` is passed explicitly
(``--allow-unsafe-pickle``): full unpickling runs code from the file. ``trust_remote_code`` (for LLMs with custom
code) is likewise off unless asked for.
"""
import contextlib
import glob
import os
import os.path as osp
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from transformers import AutoModelForCausalLM, AutoTokenizer

from mg_llava.data_files import CorruptCheckpointError, DataFileError, named_file_errors, read_json
from mg_llava.dataset import MAX_BOXES, NMS_IOU_THRESHOLD, NUM_FRAMES, PROMPT_TEMPLATE, AnyResImageViews, ImageViews
from mg_llava.model import (AVGLLaVAModel, CLIPVisionEncoder, MGLLaVAModel, OpenCLIPConvNeXtEncoder,
                            ViewsDataPreprocessor)
from mg_llava.registry import build as build_module
from mg_llava.safe_load import RefusedPickleError

from .preprocess import Preprocessor

SPEC_FILE = "mg_llava.json"
MODULES_FILE = "mg_llava_modules.safetensors"
LLM_DIR = "llm"
SPEC_VERSION = 1
VISION_PREFIXES = ("fuse_module.", "projector.", "bbox_projector.")
AVG_LLAVA_PREFIXES = ("router.",)  # the scaler has no weights
ANYRES_PREFIXES = ("anyres.",)  # the learned row-end token of tiled images
MG_LLAVA_TEMPLATES = ("vicuna", "llama3_chat", "phi3_chat", "chatml")  # the released backbones' templates
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that only full unpickling can read; the message says how to opt in."""


@dataclass
class LoadedModel:
    model: MGLLaVAModel
    tokenizer: object
    preprocessor: Preprocessor
    spec: dict
    device: torch.device


# ---------------------------------------------------------------------------------------------------- specs


def _local_or_id(path: Optional[str]) -> Optional[str]:
    """An existing local path made absolute (so an export's references work from any directory); hub ids as is."""
    if path is None:
        return None
    if path.startswith("local-dir:"):
        return "local-dir:" + _local_or_id(path[len("local-dir:"):])
    return osp.abspath(path) if osp.exists(path) else path


def _type_name(cfg) -> str:
    kind = cfg["type"]
    name = kind.__name__ if isinstance(kind, type) else str(kind)
    return name.split(".")[-1]  # 'mg_llava.ConvGateFusion' -> 'ConvGateFusion' (our registry's name)


def _plain(value):
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, dict) and "type" in value:  # a nested module config (MMFuser's high_res_fusion)
        return _module_spec(value, keep_type=True)
    return value


def _module_spec(cfg, keep_type: bool):
    if cfg is None:
        return None
    out = {k: _plain(v) for k, v in dict(cfg).items() if k != "type"}
    return dict(type=_type_name(cfg), **out) if keep_type else out


def template_name(template) -> str:
    """The name of ``template`` in :data:`PROMPT_TEMPLATE` (specs store names, not template strings). Some
    templates are identical (XTuner's ``wizardlm`` is ``vicuna``); then the MG-LLaVA backbones' names win."""
    names = [name for name, candidate in PROMPT_TEMPLATE.items() if dict(candidate) == dict(template)]
    if not names:
        raise ValueError(f"prompt template {dict(template)} is not in mg_llava.dataset.PROMPT_TEMPLATE")
    preferred = [name for name in MG_LLAVA_TEMPLATES if name in names]
    return (preferred or names)[0]


def image_spec(views: ImageViews) -> dict:
    """The views' settings; any-resolution views add their ``grid_pinpoints``."""
    spec = dict(high_res=views.high_res, low_res=views.low_res, image_mean=list(views.mean), image_std=list(views.std),
                resample=int(views.resample), reduced_jpeg_decode=views.reduced_jpeg_decode)
    if isinstance(views, AnyResImageViews):
        spec["grid_pinpoints"] = [list(p) for p in views.grid_pinpoints]
    return spec


def views_from_spec(image: dict) -> ImageViews:
    processor = SimpleNamespace(image_mean=image["image_mean"], image_std=image["image_std"],
                                resample=image["resample"])
    if image.get("grid_pinpoints") is not None:
        return AnyResImageViews(processor, high_res=image["high_res"], low_res=image["low_res"],
                                grid_pinpoints=image["grid_pinpoints"])
    return ImageViews(processor, high_res=image["high_res"], low_res=image["low_res"],
                      reduced_jpeg_decode=image.get("reduced_jpeg_decode", False))


def _num_frames(cfg: Config) -> int:
    """Frames per video of the config's video dataset (``video_dataset``, the training dataset or a part of it)."""
    train = cfg.train_dataloader.dataset
    for dataset in (cfg.get("video_dataset"), train, *train.get("datasets", [])):
        if dataset is not None and "num_frames" in dataset:
            return dataset["num_frames"]
    return NUM_FRAMES


def avg_llava_spec(model_cfg) -> Optional[dict]:
    """The scaler and router settings of an AVG-LLaVA model config (their defaults where it names none); None for
    other models. The router's width and granularity sizes come from the model, so they are not stored."""
    if _type_name(model_cfg) != AVGLLaVAModel.__name__:
        return None
    scaler = model_cfg.get("scaler") or dict(type="VisualGranularityScaler")
    router = model_cfg.get("router") or dict(type="VisualGranularityRouter")
    return dict(scaler=_module_spec(scaler, keep_type=True), router=_module_spec(router, keep_type=True))


def vision_prefixes(model) -> tuple:
    """State-dict prefixes of the trained modules an export holds besides the LLM (the router of AVG-LLaVA too)."""
    return (VISION_PREFIXES + (AVG_LLAVA_PREFIXES if isinstance(model, AVGLLaVAModel) else ())
            + (ANYRES_PREFIXES if getattr(model, "anyres", None) is not None else ()))


def spec_from_config(cfg: Config) -> dict:
    """The spec of the model a training config builds (paths made absolute when they exist here)."""
    model = cfg.model
    dataset = cfg.get("llava_dataset") or cfg.train_dataloader.dataset
    views = build_module(dataset.image_views)
    template = cfg.get("prompt_template")
    if template is None:
        template = dataset.template_map_fn.template
    visual = _module_spec(model.visual_encoder, keep_type=False)
    visual["pretrained_model_name_or_path"] = _local_or_id(visual["pretrained_model_name_or_path"])
    aux = _module_spec(model.get("visual_encoder_aux"), keep_type=False)
    if aux is not None:
        aux["model_name"] = _local_or_id(aux.get("model_name", "convnext_large_d_320"))
        aux["pretrained"] = _local_or_id(aux.get("pretrained"))
    return dict(
        format_version=SPEC_VERSION,
        llm=_local_or_id(model.llm.pretrained_model_name_or_path),
        visual_encoder=visual,
        visual_encoder_aux=aux,
        fusion=_module_spec(model.fusion, keep_type=True),
        object_features=_module_spec(model.get("object_features"), keep_type=True),
        projector_depth=model.get("projector_depth", 2),
        image=image_spec(views),
        boxes=dict(max_boxes=dataset.get("max_boxes", MAX_BOXES),
                   iou_threshold=dataset.get("iou_threshold", NMS_IOU_THRESHOLD),
                   rule=dataset.get("box_rule", "clean")),
        prompt_template=template_name(template),
        video=dict(num_frames=_num_frames(cfg)),
        avg_llava=avg_llava_spec(model),
        anyres=_module_spec(model.get("anyres"), keep_type=True),
    )


def spec_from_paths(llm: str, visual_encoder: str, visual_encoder_aux: Optional[str], prompt_template: str,
                    high_res: int = 768, low_res: Optional[int] = None, visual_encoder_aux_pretrained=None,
                    image_processor: Optional[str] = None, fusion: str = "ConvGateFusion",
                    object_tokens: bool = True, roi_output_size: int = 56, select_layer: int = -2,
                    projector_depth: int = 2, max_boxes: int = MAX_BOXES,
                    iou_threshold: float = NMS_IOU_THRESHOLD, box_rule: str = "released") -> dict:
    """The spec of the released architecture from model paths (defaults: the released MG-LLaVA settings, the
    released box rule included: this route is how a released checkpoint is loaded)."""
    from transformers import AutoImageProcessor

    if prompt_template not in PROMPT_TEMPLATE:
        raise ValueError(f"unknown prompt template {prompt_template!r}; one of {sorted(PROMPT_TEMPLATE)}")
    processor = AutoImageProcessor.from_pretrained(image_processor or visual_encoder)
    views = ImageViews(processor, high_res=high_res, low_res=low_res)
    return dict(
        format_version=SPEC_VERSION,
        llm=_local_or_id(llm),
        visual_encoder=dict(pretrained_model_name_or_path=_local_or_id(visual_encoder), select_layer=select_layer),
        visual_encoder_aux=None if visual_encoder_aux is None else dict(
            model_name=_local_or_id(visual_encoder_aux), pretrained=_local_or_id(visual_encoder_aux_pretrained)),
        fusion=dict(type=fusion),
        object_features=dict(type="MultiScaleRoIFeatures", output_size=roi_output_size) if object_tokens else None,
        projector_depth=projector_depth,
        image=image_spec(views),
        boxes=dict(max_boxes=max_boxes, iou_threshold=iou_threshold, rule=box_rule),
        prompt_template=prompt_template,
    )


def build_from_spec(spec: dict, trust_remote_code: bool = False) -> MGLLaVAModel:
    """An MGLLaVAModel (an AVGLLaVAModel when the spec has ``avg_llava``) with the spec's LLM weights and freshly
    initialised fusion, projectors and router (and the data preprocessor of the spec's views, so the model also
    trains on the training loader's uint8 views)."""
    llm = ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=spec["llm"],
                     trust_remote_code=trust_remote_code)
    aux = spec.get("visual_encoder_aux")
    avg_llava = spec.get("avg_llava")
    model_type, extra = MGLLaVAModel, {}
    if avg_llava is not None:
        model_type = AVGLLaVAModel
        extra = dict(scaler=dict(avg_llava["scaler"]), router=dict(avg_llava["router"]))
    if spec.get("anyres") is not None:
        extra["anyres"] = dict(spec["anyres"])
    return model_type(
        llm=llm,
        visual_encoder=dict(type=CLIPVisionEncoder, **spec["visual_encoder"]),
        visual_encoder_aux=None if aux is None else dict(type=OpenCLIPConvNeXtEncoder, **aux),
        fusion=dict(spec["fusion"]),
        object_features=None if spec.get("object_features") is None else dict(spec["object_features"]),
        projector_depth=spec.get("projector_depth", 2),
        freeze_llm=False,
        use_activation_checkpointing=False,
        data_preprocessor=ViewsDataPreprocessor.from_image_views(views_from_spec(spec["image"])),
        **extra,
    )


# ---------------------------------------------------------------------------------------------------- weights


def _unsafe_state_dict(path: str) -> dict:
    """Full unpickling of a checkpoint file or DeepSpeed folder; only on explicit opt-in."""
    from mg_llava.model.checkpoint import DEEPSPEED_MODEL_FILE

    source = path
    if osp.isdir(path):
        files = [osp.join(root, DEEPSPEED_MODEL_FILE) for root, _, names in os.walk(path)
                 if DEEPSPEED_MODEL_FILE in names]
        if len(files) != 1:
            raise FileNotFoundError(f"{path}: expected one {DEEPSPEED_MODEL_FILE}, found {files}")
        source = files[0]
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    for key in ("state_dict", "module"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    out = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: {key!r} is a {type(value).__name__}, not a tensor")
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def load_state_dict_checked(model: MGLLaVAModel, state_dict: dict, source: str) -> None:
    """Load trainable weights; keys the model lacks are an error (as ``load_trainable``)."""
    model_keys = set(torch.nn.Module.state_dict(model))
    unexpected = sorted(set(state_dict) - model_keys)
    if unexpected:
        raise ValueError(f"{source}: {len(unexpected)} of {len(state_dict)} keys are not in this model, "
                         f"e.g. {unexpected[:5]}")
    model.load_state_dict(state_dict, strict=False)


def read_checkpoint(path: str, allow_unsafe_pickle: bool = False) -> dict:
    """The trainable state dict of a checkpoint (any layout :func:`load_trainable_state_dict` reads), read BEFORE
    any model is built, so a missing, corrupt or refused file costs seconds, not an LLM load.

    Raises ``FileNotFoundError``, :class:`~mg_llava.data_files.CorruptCheckpointError` (truncated or damaged, also
    with ``allow_unsafe_pickle``) or :class:`UnsafeCheckpointError` (names a global the safe loader refuses; the
    message names it).
    """
    from mg_llava.model.checkpoint import load_trainable_state_dict

    try:
        return load_trainable_state_dict(path)
    except RefusedPickleError as err:
        if not allow_unsafe_pickle:
            raise UnsafeCheckpointError(
                f"{path} names Python objects the safe loader does not reconstruct (tensors, containers and "
                f"training-framework records load; see mg_llava/safe_load.py). If you trust the file, pass "
                f"--allow-unsafe-pickle (full unpickling runs code from the file).\n({str(err).splitlines()[0]})"
            ) from err
        print_log(f"{path}: loading with full unpickling (--allow-unsafe-pickle)", "current")
        with named_file_errors(path, "checkpoint", CorruptCheckpointError):
            try:
                return _unsafe_state_dict(path)
            except (RuntimeError, AttributeError, ImportError) as corrupt:  # torch's zip reader; a damaged name
                raise ValueError(str(corrupt)) from corrupt


def load_checkpoint(model: MGLLaVAModel, path: str, allow_unsafe_pickle: bool = False) -> None:
    """Load a trainable-weight checkpoint (any layout :func:`load_trainable_state_dict` reads) into ``model``."""
    load_state_dict_checked(model, read_checkpoint(path, allow_unsafe_pickle), path)


def check_safetensors(path: str, what: str) -> None:
    """Parse a safetensors file's header and check its tensors fit in the file (nothing is read)."""
    from safetensors import safe_open

    if not osp.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    with named_file_errors(path, what), _safetensors_errors(path, what):
        with safe_open(path, "pt") as f:
            list(f.keys())


def read_safetensors(path: str, what: str) -> dict:
    from safetensors.torch import load_file

    check_safetensors(path, what)
    with named_file_errors(path, what), _safetensors_errors(path, what):
        return load_file(path)


@contextlib.contextmanager
def _safetensors_errors(path: str, what: str):
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:  # header too large, truncated, offsets outside the file, bad JSON header
        raise DataFileError(f"{what} {path}: damaged safetensors file ({err})", path) from err


def check_model_paths(spec: dict) -> None:
    """Local model paths a spec names (LLM, encoders) must exist before minutes go into building the model."""
    paths = [("LLM", spec.get("llm"))]
    paths.append(("visual encoder", (spec.get("visual_encoder") or {}).get("pretrained_model_name_or_path")))
    for name, path in paths:
        looks_local = isinstance(path, str) and (osp.isabs(path) or path.startswith((".", "~")))
        if looks_local and not osp.isdir(osp.expanduser(path)):
            raise FileNotFoundError(f"{name} path {path} does not exist (or is not a folder)")


def load_vision_modules(model: MGLLaVAModel, state_dict, path: str) -> None:
    """The fusion, both projectors (and an AVG-LLaVA's router) from an export's safetensors file; the key sets must
    match exactly."""
    expected = {k for k in torch.nn.Module.state_dict(model) if k.startswith(vision_prefixes(model))}
    if set(state_dict) != expected:
        raise ValueError(f"{path}: keys differ from the model's; missing {sorted(expected - set(state_dict))[:5]}, "
                         f"unexpected {sorted(set(state_dict) - expected)[:5]}")
    model.load_state_dict(state_dict, strict=False)


# ---------------------------------------------------------------------------------------------------- entry points


def default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under torchrun, so sharded evaluation uses every GPU), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def finish(model: MGLLaVAModel, tokenizer, spec: dict, device=None, dtype: Optional[str] = None,
           system: Optional[str] = None, box_rule: Optional[str] = None) -> LoadedModel:
    """Device, dtype and the preprocessor; ``box_rule`` overrides the spec's (the rule the model was trained with:
    the config's, the export's, or 'released' for a released checkpoint loaded from paths)."""
    boxes = dict(spec["boxes"])
    boxes.setdefault("rule", "clean")  # exports written before the rule was recorded
    if box_rule is not None:
        boxes["rule"] = box_rule
    spec = dict(spec, boxes=boxes)
    print_log(f"box rule: {spec['boxes']['rule']}", "current")
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


def load_from_config(config: str, checkpoint: Optional[str], allow_unsafe_pickle: bool = False,
                     cfg_options: Optional[dict] = None, **kwargs) -> LoadedModel:
    """The model, tokenizer, views and template of a training config, with ``checkpoint``'s weights.
    ``cfg_options`` overrides the config's settings (``--cfg-options``, as ``xtuner train`` merges them)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    spec = spec_from_config(cfg)
    state_dict = read_checkpoint(checkpoint, allow_unsafe_pickle) if checkpoint is not None else None
    model_cfg = cfg.model.copy()
    model_cfg.update(pretrained_pth=None, use_activation_checkpointing=False)
    model = build_module(model_cfg)
    if state_dict is not None:
        load_state_dict_checked(model, state_dict, checkpoint)
    tokenizer = build_module(cfg.tokenizer)
    return finish(model, tokenizer, spec, **kwargs)


def load_from_spec(spec: dict, checkpoint: Optional[str], allow_unsafe_pickle: bool = False,
                   trust_remote_code: bool = False, **kwargs) -> LoadedModel:
    state_dict = read_checkpoint(checkpoint, allow_unsafe_pickle) if checkpoint is not None else None
    check_model_paths(spec)
    model = build_from_spec(spec, trust_remote_code=trust_remote_code)
    if state_dict is not None:
        load_state_dict_checked(model, state_dict, checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(spec["llm"], trust_remote_code=trust_remote_code)
    return finish(model, tokenizer, spec, **kwargs)


def is_export(path: Optional[str]) -> bool:
    return path is not None and osp.isfile(osp.join(path, SPEC_FILE))


def load_exported(folder: str, trust_remote_code: bool = False, **kwargs) -> LoadedModel:
    """A folder written by :func:`mg_llava.inference.export.export_model` (safetensors only, no pickle)."""
    spec, modules = read_export(folder)
    model = build_from_spec(spec, trust_remote_code=trust_remote_code)
    load_vision_modules(model, modules, osp.join(folder, MODULES_FILE))
    tokenizer = AutoTokenizer.from_pretrained(spec["llm"], trust_remote_code=trust_remote_code)
    return finish(model, tokenizer, spec, **kwargs)


def read_export(folder: str):
    """``(spec, vision-module state dict)`` of an export folder, every file checked before a model is built:
    the spec parses, the vision modules load, each LLM safetensors shard has a sound header, the LLM folder exists."""
    if not is_export(folder):
        raise FileNotFoundError(f"{folder} is not an MG-LLaVA export (no {SPEC_FILE})")
    spec_path = osp.join(folder, SPEC_FILE)
    with named_file_errors(spec_path, "export spec"):
        spec = read_json(spec_path, "export spec")
        if not isinstance(spec, dict):
            raise ValueError(f"{spec_path}: expected a JSON object, got {type(spec).__name__}")
        if spec.get("format_version") != SPEC_VERSION:
            raise ValueError(f"{spec_path}: format_version {spec.get('format_version')}, expected {SPEC_VERSION}")
        spec = dict(spec, llm=osp.join(osp.abspath(folder), spec["llm"]))
        if not osp.isdir(spec["llm"]):
            raise ValueError(f"{spec_path}: names the LLM folder {spec['llm']}, which does not exist")
    modules = read_safetensors(osp.join(folder, MODULES_FILE), "export's vision modules")
    for shard in sorted(glob.glob(osp.join(spec["llm"], "*.safetensors"))):
        check_safetensors(shard, "export's LLM shard")
    check_model_paths(spec)
    return spec, modules
