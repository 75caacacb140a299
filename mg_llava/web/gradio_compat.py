"""Run gradio 3.18 on pydantic 2.

gradio 3.18.0 is the newest release whose requirements fit the pinned stack (later releases cap pillow below 13 or
markdown-it-py below 3). It was written for pydantic 1, where an ``Optional[X]`` field without a default is optional;
pydantic 2 makes it required, so the page's requests (which leave ``event_id`` out) and the queue's progress and
estimate messages fail validation and every event hangs. :func:`patch_gradio` gives those fields the ``None`` default
pydantic 1 gave them.
"""
import typing

import gradio
from gradio import data_classes

SUPPORTED_GRADIO = "3.18.0"


def _optional_fields_default_to_none(model) -> None:
    changed = False
    for field in model.model_fields.values():
        if field.is_required() and type(None) in typing.get_args(field.annotation):
            field.default = None
            changed = True
    if changed:
        model.model_rebuild(force=True)


def patch_gradio() -> None:
    """Make gradio's request and queue messages validate as under pydantic 1 (idempotent)."""
    if gradio.__version__.strip() != SUPPORTED_GRADIO:
        raise RuntimeError(f"the web demo is written for gradio {SUPPORTED_GRADIO} (pip install -e .[web]); found "
                           f"gradio {gradio.__version__.strip()}")
    for model in (data_classes.PredictBody, data_classes.Estimation, data_classes.ProgressUnit):
        _optional_fields_default_to_none(model)
