"""A transformers model and its processor, given as a folder (or hub id) or as built objects."""
from typing import Tuple


def model_and_processor(model, processor, model_cls, processor_cls, what: str) -> Tuple[object, object]:
    """``(model, processor)``: ``model`` loaded with ``model_cls.from_pretrained`` when it is a path (its processor
    from the same folder unless one is given), ``processor`` with ``processor_cls.from_pretrained`` when it is a path.
    A built model needs its processor (``what`` names the model in the error)."""
    if isinstance(model, str):
        processor = processor if processor is not None else model
        model = model_cls.from_pretrained(model)
    elif processor is None:
        raise ValueError(f"pass the processor (or its folder) together with a built {what} model")
    if isinstance(processor, str):
        processor = processor_cls.from_pretrained(processor)
    return model, processor


__all__ = ["model_and_processor"]
