"""The *spec* of an MG-LLaVA model: a JSON-able description of how to build it again (LLM path, vision encoder
references, fusion and object-feature settings, image geometry, box rules, template name), made from a training
config or from model paths. :mod:`.export` writes it next to the weights; :mod:`.build` builds a model from it.
"""
import inspect
import os.path as osp
from types import SimpleNamespace
from typing import Optional

import torch
from mmengine.config import Config

from mg_llava.dataset import (MAX_BOXES, NMS_IOU_THRESHOLD, PROMPT_TEMPLATE, AnyResImageViews, DataSettings,
                              ImageViews)
from mg_llava.model import AVGLLaVAModel, VisualGranularityRouter
from mg_llava.registry import build as build_module

SPEC_VERSION = 1
MG_LLAVA_TEMPLATES = ("vicuna", "llama3_chat", "phi3_chat", "chatml")  # the released backbones' templates


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


def avg_llava_spec(model_cfg) -> Optional[dict]:
    """The scaler and router settings of an AVG-LLaVA model config (their defaults where it names none); None for
    other models. The router's width and granularity sizes come from the model, so they are not stored; which views
    it reads on tiled images is always stored (exports made before it was a setting read the global view only)."""
    if _type_name(model_cfg) != AVGLLaVAModel.__name__:
        return None
    scaler = model_cfg.get("scaler") or dict(type="VisualGranularityScaler")
    router = _module_spec(model_cfg.get("router") or dict(type="VisualGranularityRouter"), keep_type=True)
    router.setdefault("views", inspect.signature(VisualGranularityRouter).parameters["views"].default)
    return dict(scaler=_module_spec(scaler, keep_type=True), router=router)


def spec_from_config(cfg: Config) -> dict:
    """The spec of the model a training config builds (paths made absolute when they exist here)."""
    model = cfg.model
    data = DataSettings.from_config(cfg)  # the training data's views, box rules, template and frames
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
        object_merge=_module_spec(model.get("object_merge"), keep_type=True),
        projector_depth=model.get("projector_depth", 2),
        image=image_spec(build_module(data.image_views)),
        boxes=dict(max_boxes=data.max_boxes, iou_threshold=data.iou_threshold, rule=data.box_rule),
        prompt_template=template_name(data.prompt_template),
        video=dict(num_frames=data.num_frames),
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


def check_model_paths(spec: dict) -> None:
    """Local model paths a spec names (LLM, encoders) must exist before minutes go into building the model."""
    paths = [("LLM", spec.get("llm"))]
    paths.append(("visual encoder", (spec.get("visual_encoder") or {}).get("pretrained_model_name_or_path")))
    for name, path in paths:
        looks_local = isinstance(path, str) and (osp.isabs(path) or path.startswith((".", "~")))
        if looks_local and not osp.isdir(osp.expanduser(path)):
            raise FileNotFoundError(f"{name} path {path} does not exist (or is not a folder)")
