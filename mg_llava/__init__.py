"""MG-LLaVA: multi-granularity visual instruction tuning as an XTuner/MMEngine plugin.

Importing the package applies the compatibility patches (see :mod:`mg_llava.compat`) and registers every module in
:data:`mg_llava.registry.MODELS`.
"""
from . import compat
from .version import __version__

compat.apply()

from .registry import MODELS  # noqa: E402
from . import boxgen, dataset, engine, model  # noqa: E402,F401  (registers every module)

__all__ = ["MODELS", "__version__"]
