"""Compatibility patches applied on ``import mg_llava``. Each one is small, idempotent and tested.

1. XTuner 0.2.0 picks the LLM dtype with ``get_torch_device().is_bf16_supported()``; on a machine without CUDA that
   is ``torch.cpu``, which has no such function, so building ``LLaVAModel`` from a config crashes. We give
   ``torch.cpu`` the missing query (answering False, which makes XTuner keep its float16 fallback for flash
   attention only; on CPU it does not select flash attention at all).
2. Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses mmengine training checkpoints
   (their ``MessageHub`` state holds ``HistoryBuffer`` objects, numpy values, and in stock mmengine
   ``getattr(HistoryBuffer, 'mean')``). mmengine reads local checkpoints (``--resume``, ``load_from``) through its
   ``CheckpointLoader`` scheme ``''``; we register :func:`mg_llava.safe_load.mmengine_load_from_local` for it, the
   restricted unpickler that also reads stock files and runs nothing they name. ``HistoryBuffer``'s statistics
   functions are class-level code, so they are no longer written into (``__getstate__``) nor taken from
   (``__setstate__``) a file; other ``torch.load(weights_only=True)`` callers (XTuner's ``pth_to_hf``) get an
   exact allow-list of the globals our own checkpoints need, never ``getattr``.
3. mmengine's torchrun and slurm initialisations (``_init_dist_pytorch``, ``_init_dist_slurm``) call
   ``torch.cuda.set_device`` unconditionally, so ``NPROC_PER_NODE=2 xtuner train`` and ``srun ... xtuner train
   --launcher slurm`` die on a machine without a GPU. Without CUDA (and only then) we initialise the process group
   with gloo and skip the device selection; under slurm we first set the variables mmengine derives from slurm's
   (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, ``MASTER_ADDR``
   = the job's first node, ``MASTER_PORT`` from the environment or 29500), as mmengine 0.10.6 does. For mmengine's
   DeepSpeed strategy (``init_backend='deepspeed'``) the group starts through ``deepspeed.init_distributed(dist_backend='gloo')``, the backend DeepSpeed's CPU
   accelerator itself falls back to without oneCCL; there DeepSpeed would also JIT-compile its shared-memory
   all-reduce op (a C++ build of minutes, every rank waiting on one lock; the op serves only
   ``inference_all_reduce``), so on CPU we mark that op unavailable.

XTuner parses configs in mmengine's lazy-import mode, in which a config's imports load nothing until an object is
built, yet ``xtuner train --resume`` reads the checkpoint and the runner starts ``torch.distributed`` before any model
is built. Our configs therefore import ``mg_llava`` eagerly (``__import__("mg_llava")``) so the patches are in place.
4. XTuner 0.2.0 pins bitsandbytes 0.45.0, whose import fails with triton >= 3.2 (which torch >= 2.6 brings):
   its optional int8 triton kernels import ``triton.ops.matmul_perf_model``, a module triton removed. peft imports
   bitsandbytes for LoRA/QLoRA, so both break. When (and only when) that module is missing we register a stand-in
   whose two functions raise if called: bitsandbytes imports, its CUDA 4-bit/8-bit paths (QLoRA) are unaffected,
   and only its triton int8 research kernels stay unusable, with a clear error.
5. DeepSpeed started without a launcher (``xtuner train <deepspeed config>`` in one process) looks for MPI
   (``mpi4py``) to learn its rank, and fails without it (InternLM/xtuner#592). When mmengine's DeepSpeed strategy wraps
   the model and no process group exists, we start a one-process group (in-memory store; gloo, nccl on a GPU).
6. Our configs derive every part from their top-level settings when they are parsed
   (:mod:`mg_llava.config_settings`), so ``--cfg-options lr=1e-4`` would change the variable and nothing built from
   it. ``Config.merge_from_dict`` (what ``xtuner train --cfg-options`` calls) derives the parts again when an
   option sets one of those settings; an option on another top-level variable whose value was copied into parts
   (``data_root``), or on a setting of a config whose parts do not follow its settings, is refused with the fields
   to set instead. Options on the parts the runner reads (``optim_wrapper.optimizer.lr=...``, ``custom_hooks=[]``)
   merge as before; configs not written on these rules are left alone.
"""
import os
import subprocess

import numpy as np
import torch


def _patch_cpu_bf16_query():
    if not hasattr(torch.cpu, "is_bf16_supported"):
        torch.cpu.is_bf16_supported = lambda *args, **kwargs: False


def mmengine_resume_safe_globals():
    """The globals an mmengine/XTuner training checkpoint needs beyond tensors and plain containers."""
    from mmengine.config import ConfigDict
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtype_classes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    # ConfigDict: a ZeRO-3 model-states file holds the DeepSpeed config as one (XTuner's resume reads its seed there)
    return [HistoryBuffer, ConfigDict, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def _history_buffer_getstate(self) -> dict:
    state = dict(self.__dict__)
    state.pop("statistics_methods", None)  # class-level; registered by code, not restored from files
    return state


def _history_buffer_setstate(self, state: dict) -> None:
    state = dict(state)
    state.pop("statistics_methods", None)  # a file must not replace the class's statistics functions
    self._set_default_statistics()
    self.__dict__.update(state)


def _allow_mmengine_checkpoints():
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    from .safe_load import mmengine_load_from_local

    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    CheckpointLoader.register_scheme(prefixes="", loader=mmengine_load_from_local, force=True)
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 loads everything anyway
        add_safe_globals(mmengine_resume_safe_globals())


def _init_dist_pytorch_without_cuda(backend, init_backend="torch", **kwargs):
    """torchrun initialisation for CPU-only machines: gloo, no ``torch.cuda.set_device``. ``init_backend='deepspeed'``
    (mmengine's DeepSpeed strategy) goes through ``deepspeed.init_distributed`` with gloo, the backend DeepSpeed's
    own CPU accelerator falls back to without oneCCL."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if init_backend == "torch":
        torch.distributed.init_process_group(backend="gloo", rank=rank, world_size=world_size, **kwargs)
    elif init_backend == "deepspeed":
        import deepspeed

        _skip_deepspeed_shm_op()
        deepspeed.init_distributed(dist_backend="gloo", rank=rank, world_size=world_size, **kwargs)
    else:
        raise RuntimeError(f"init_backend={init_backend!r} needs a GPU; on CPU 'torch' and 'deepspeed' (gloo) work")


def _init_dist_slurm_without_cuda(backend, port=None, init_backend="torch", **kwargs):
    """slurm initialisation for CPU-only machines: mmengine's environment from slurm's variables, then gloo."""
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:  # the job's first node
        hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]], capture_output=True,
                               text=True, check=True)
        os.environ["MASTER_ADDR"] = hosts.stdout.split()[0]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    _init_dist_pytorch_without_cuda(backend, init_backend=init_backend, **kwargs)


def _without_cuda(original, cpu_init):
    """``original`` where mmengine has a device to select, ``cpu_init`` where it has none."""
    from mmengine.dist import utils as dist_utils

    def init_dist(backend, *args, **kwargs):
        accelerators = (dist_utils.is_npu_available, dist_utils.is_mlu_available, dist_utils.is_musa_available)
        if torch.cuda.is_available() or any(available() for available in accelerators):
            return original(backend, *args, **kwargs)
        return cpu_init(backend, *args, **kwargs)

    init_dist._mg_llava_cpu = True
    return init_dist


def _patch_mmengine_dist_for_cpu():
    from mmengine.dist import utils as dist_utils

    if torch.cuda.is_available():
        return
    for name, cpu_init in (("_init_dist_pytorch", _init_dist_pytorch_without_cuda),
                           ("_init_dist_slurm", _init_dist_slurm_without_cuda)):
        original = getattr(dist_utils, name)
        if not getattr(original, "_mg_llava_cpu", False):
            setattr(dist_utils, name, _without_cuda(original, cpu_init))


def _skip_deepspeed_shm_op():
    """DeepSpeed's CPU process group JIT-compiles a shared-memory all-reduce op when it starts (C++ toolchain, minutes,
    every rank racing for one build lock), used only by ``inference_all_reduce``, never in training."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _init_single_process_group():
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)


def _patch_deepspeed_single_process():
    from mmengine._strategy import deepspeed as mmengine_deepspeed

    strategy = mmengine_deepspeed.DeepSpeedStrategy
    if getattr(strategy._wrap_model, "_mg_llava_single_process", False):
        return
    original = strategy._wrap_model

    def wrap_model(self, model):
        if not torch.distributed.is_initialized():  # no launcher: spare DeepSpeed its MPI discovery
            _init_single_process_group()
        if not torch.cuda.is_available():
            _skip_deepspeed_shm_op()
        return original(self, model)

    wrap_model._mg_llava_single_process = True
    strategy._wrap_model = wrap_model


def _triton_ops_stand_in():
    import importlib.util
    import sys
    import types

    try:
        if importlib.util.find_spec("triton") is None or importlib.util.find_spec("triton.ops") is not None:
            return
    except (ImportError, ValueError):
        return

    def unavailable(*args, **kwargs):
        raise RuntimeError("bitsandbytes' triton int8 kernels need triton < 3.2 (triton.ops was removed)")

    ops = types.ModuleType("triton.ops")
    perf_model = types.ModuleType("triton.ops.matmul_perf_model")
    perf_model.early_config_prune = perf_model.estimate_matmul_time = unavailable
    ops.matmul_perf_model = perf_model
    sys.modules.setdefault("triton.ops", ops)
    sys.modules.setdefault("triton.ops.matmul_perf_model", perf_model)


def _derive_after_cfg_options():
    from mmengine.config import Config

    from mg_llava.config_settings import merge_options

    original = Config.merge_from_dict
    if getattr(original, "_mg_llava_settings", False):
        return

    def merge_from_dict(self, options, allow_list_keys=True):
        merge_options(lambda: object.__getattribute__(self, "_cfg_dict"), options,
                      lambda opts: original(self, opts, allow_list_keys=allow_list_keys))

    merge_from_dict._mg_llava_settings = True
    merge_from_dict.__doc__ = original.__doc__
    Config.merge_from_dict = merge_from_dict


def apply():
    _triton_ops_stand_in()
    _patch_cpu_bf16_query()
    _allow_mmengine_checkpoints()
    _patch_mmengine_dist_for_cpu()
    _patch_deepspeed_single_process()
    _derive_after_cfg_options()
