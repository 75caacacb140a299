"""MG-LLaVA as a model of lmms-eval, the evaluation harness of large multimodal models.

lmms-eval (0.7) finds external models through the ``lmms_eval.models`` entry-point group; setup.cfg registers
:func:`model_manifest` there, so once this package is installed::

    python -m lmms_eval --model mg_llava --model_args pretrained=exported/vicuna7b,boxes=boxes.json \\
        --tasks <task> --include_path <folder of task YAMLs> --batch_size 8

The manifest only names the class; lmms-eval imports :mod:`.model` when ``--model mg_llava`` is asked for.
"""
MODEL_ID = "mg_llava"
CLASS_PATH = "mg_llava.lmms_plugin.model.MGLLaVALmms"


def model_manifest():
    """The ``lmms_eval.models`` entry point: the model id and where its (simple, non-chat) class lives."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


__all__ = ["CLASS_PATH", "MODEL_ID", "model_manifest"]
