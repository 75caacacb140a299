"""The project's registry.

``MODELS`` is a child of XTuner's ``BUILDER`` under the scope ``mg_llava``, so a config may name a module by class
object (XTuner's habit: ``dict(type=ConvGateFusion, ...)``), by plain string through our registry
(``MODELS.build(dict(type='ConvGateFusion'))``) or by scoped string through XTuner's
(``BUILDER.build(dict(type='mg_llava.ConvGateFusion'))``).
"""
from mmengine.registry import Registry
from xtuner.registry import BUILDER

# ``mg_llava.inference.export`` registers the whole-model export that MGLLaVAModel.to_hf delegates to: the model
# layer names it by key and never imports the inference layer above it.
MODELS = Registry("mg_llava", parent=BUILDER, scope="mg_llava", locations=["mg_llava", "mg_llava.inference.export"])
DATASETS = MODELS  # one registry: datasets, collate functions and modules are all built the same way
WHOLE_MODEL_EXPORT = "export_whole_model"

__all__ = ["MODELS", "DATASETS", "WHOLE_MODEL_EXPORT", "build"]


def build(cfg_or_obj, **default_args):
    """Build ``cfg_or_obj`` if it is a config dict; return it unchanged if it is already built."""
    if isinstance(cfg_or_obj, dict):
        return MODELS.build(cfg_or_obj, default_args=default_args or None)
    return cfg_or_obj
