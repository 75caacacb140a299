"""An MG-LLaVA model from a spec (:mod:`.spec`), with freshly initialised trained modules."""
from typing import Optional

from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM

from mg_llava.model import (AVGLLaVAModel, CLIPVisionEncoder, MGLLaVAModel, OpenCLIPConvNeXtEncoder,
                            ViewsDataPreprocessor)

from .spec import views_from_spec


def build_from_spec(spec: dict, trust_remote_code: bool = False, llm_kwargs: Optional[dict] = None) -> MGLLaVAModel:
    """An MGLLaVAModel (an AVGLLaVAModel when the spec has ``avg_llava``) with the spec's LLM weights and freshly
    initialised fusion, projectors and router (and the data preprocessor of the spec's views, so the model also
    trains on the training loader's uint8 views). ``llm_kwargs`` go to the LLM's ``from_pretrained`` (device map,
    quantisation: :mod:`.placement`)."""
    llm = ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=spec["llm"],
                     trust_remote_code=trust_remote_code, **(llm_kwargs or {}))
    aux = spec.get("visual_encoder_aux")
    avg_llava = spec.get("avg_llava")
    model_type, extra = MGLLaVAModel, {}
    if avg_llava is not None:
        model_type = AVGLLaVAModel
        # exports written before the router's views were a setting were trained reading the global view only
        extra = dict(scaler=dict(avg_llava["scaler"]), router=dict(dict(views="global"), **avg_llava["router"]))
    if spec.get("anyres") is not None:
        extra["anyres"] = dict(spec["anyres"])
    if spec.get("object_merge") is not None:  # a Table 5b cross-attention ablation
        extra["object_merge"] = dict(spec["object_merge"])
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
