"""Loading weights into a model whose parameters DeepSpeed ZeRO-3 has partitioned.

Under ZeRO-3 (and inside ``deepspeed.zero.Init``, which transformers enters when an ``HfDeepSpeedConfig`` with stage 3
is alive) every parameter holds only this process's shard; its full shape is ``ds_shape`` and a plain
``load_state_dict`` fails on the shape. Each module's own parameters are gathered in turn, written, and partitioned
again (``modifier_rank=0`` makes rank 0's values the ones kept), so at most one module is ever whole in memory.
"""
from typing import Dict

import torch
import torch.nn as nn


def is_partitioned(module: nn.Module) -> bool:
    """True when ZeRO-3 has partitioned any parameter of ``module``."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def load_partitioned_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state_dict, strict=False)`` for a ZeRO-3 partitioned model; keys must be parameters."""
    import deepspeed

    for prefix, module in model.named_modules():
        own = {name: p for name, p in module.named_parameters(prefix=prefix, recurse=False) if name in state_dict}
        if not own:
            continue
        with deepspeed.zero.GatheredParameters(list(own.values()), modifier_rank=0):
            for name, param in own.items():
                value = state_dict[name]
                if value.shape != param.shape:
                    raise ValueError(f"{name}: the checkpoint holds shape {tuple(value.shape)}, the model "
                                     f"{tuple(param.shape)}")
                with torch.no_grad():
                    param.copy_(value)
    unknown = set(state_dict) - {name for name, _ in model.named_parameters()}
    if unknown:
        raise ValueError(f"{len(unknown)} keys are not parameters of the model, e.g. {sorted(unknown)[:5]}")
