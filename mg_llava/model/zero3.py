"""Loading weights into a model whose parameters DeepSpeed ZeRO-3 has partitioned.

Under ZeRO-3 (and inside ``deepspeed.zero.Init``, which transformers enters when an ``HfDeepSpeedConfig`` with stage 3
is alive) every parameter holds only this process's shard; its full shape is ``ds_shape`` and a plain
``load_state_dict`` fails on the shape. Each module's own parameters are gathered in turn, written, and partitioned
again (``modifier_rank=0`` makes rank 0's values the ones kept), so at most one module is ever whole in memory.

It also holds a fix for DeepSpeed 0.16's ZeRO-3 on CPU (gloo; the CPU recipes and every DeepSpeed test):
``_allgather_params_coalesced`` starts one asynchronous all-gather per parameter and waits only for the last before
reading the buffers (``torch.empty``). On CUDA the gathers run in order on one stream; on gloo each runs on its own
thread, so a parameter could be read before its gather finished and hold uninitialised memory. Seen here as a NaN or
slightly different first loss in 6 of 15 two-process ZeRO-3 runs (NaN weights in the frozen CLIP); DeepSpeed fixed
it upstream (deepspeedai/DeepSpeed#8539, after the 0.16 line XTuner 0.2.0 installs). :func:`wait_for_gloo_all_gathers`
makes every all-gather ZeRO-3's partition code starts on a gloo group finish before the call returns; NCCL groups are
untouched.
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


_ALL_GATHERS = ("all_gather_into_tensor", "all_gather", "allgather_fn")


def _is_gloo(group) -> bool:
    import torch.distributed as torch_dist

    try:
        return torch_dist.get_backend(group) == "gloo"
    except (RuntimeError, ValueError):  # no process group (yet): nothing to wait for
        return False


class _GlooAllGathersWait:
    """``deepspeed.comm`` as ZeRO-3's partition module sees it, except that an asynchronous all-gather on a gloo
    group has finished when the call returns (its handle can still be waited on, as the callers do)."""

    def __init__(self, comm):
        self.comm = comm
        for name in _ALL_GATHERS:
            setattr(self, name, self._finishing(getattr(comm, name)))

    def __getattr__(self, name):
        return getattr(self.comm, name)

    @staticmethod
    def _finishing(all_gather):
        def call(*args, **kwargs):
            handle = all_gather(*args, **kwargs)
            if kwargs.get("async_op") and handle is not None and _is_gloo(kwargs.get("group")):
                handle.wait()
            return handle

        return call


def wait_for_gloo_all_gathers() -> None:
    """Install the gloo all-gather fix (module docstring) in DeepSpeed's ZeRO-3 partition code; idempotent.
    Importing :mod:`mg_llava.model` installs it, so every config that builds our models trains with it."""
    from deepspeed.runtime.zero import partition_parameters

    if not isinstance(partition_parameters.dist, _GlooAllGathersWait):
        partition_parameters.dist = _GlooAllGathersWait(partition_parameters.dist)
