"""Using a trained MG-LLaVA: loading (config, paths, released checkpoints, exports), chat, evaluation, export.

- :mod:`.loading`: :class:`LoadedModel` from a training config, model paths or an exported folder, joining
  :mod:`.spec` (how to build a model again), :mod:`.build` (a model from a spec) and :mod:`.weights` (checkpoints and
  export files, read before a model is built).
- :mod:`.preprocess`: one conversation -> a sample of the training dataset's format (the training code's own
  tokenisation, image views and box rules).
- :mod:`.generation`: batched greedy generation with left padding and stop words; streaming.
- :mod:`.chat`: :class:`ChatSession`. :mod:`.benchmarks`, :mod:`.evaluate`, :mod:`.metrics`: batch evaluation.
- :mod:`.export`: the whole model to a folder of safetensors.
"""
from .chat import ChatSession
from .generation import generate
from .loading import LoadedModel, load_exported, load_from_config, load_from_spec
from .preprocess import ImageLoadError, MissingBoxesError, PreparedImage, Preprocessor
from .weights import UnsafeCheckpointError, load_checkpoint

__all__ = [
    "ChatSession", "ImageLoadError", "LoadedModel", "MissingBoxesError", "PreparedImage", "Preprocessor",
    "UnsafeCheckpointError", "generate", "load_checkpoint", "load_exported", "load_from_config", "load_from_spec",
]
