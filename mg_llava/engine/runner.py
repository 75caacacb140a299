"""The runner our CPU configs name as ``runner_type``.

It is mmengine's ``Runner`` unchanged. Naming it matters for *when* it is imported: XTuner configs are parsed in
mmengine's lazy-import mode, so nothing of ``mg_llava`` is imported until an object is built, and the runner
initialises ``torch.distributed`` before it builds the model. Resolving ``runner_type`` imports ``mg_llava`` first,
which applies :mod:`mg_llava.compat` (torchrun on CPU-only machines) in time.
"""
from mmengine.runner import Runner

from ..registry import MODELS


@MODELS.register_module()
class MGLLaVARunner(Runner):
    pass
