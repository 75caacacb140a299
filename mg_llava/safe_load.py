"""Reading checkpoint files without running anything they name: a restricted unpickler for trainer checkpoints.

Stock mmengine, XTuner and DeepSpeed save the trainer's whole state with ``torch.save``: tensors, plain containers,
numpy arrays and a few framework objects. ``torch.load(weights_only=True)`` refuses some of what they write (mmengine's
``MessageHub`` pickles ``getattr(HistoryBuffer, 'mean')``; DeepSpeed pickles its config and enums), and full
unpickling runs whatever callable the file names. :func:`safe_load` sits between the two. Every global a pickle
names is looked up here, never imported:

1. an exact allow-list of harmless callables is reconstructed for real: tensors and parameters (no backward hooks),
   storages, ``torch.Size``, ``torch.device``, dtypes, ``OrderedDict``, ``set``/``frozenset``/``complex``/``slice``/
   ``bytearray``, numpy arrays/scalars/dtypes, mmengine's ``HistoryBuffer`` (what ``--resume`` needs), and two
   restricted stand-ins: ``builtins.getattr`` only for ``HistoryBuffer``'s statistics (``'mean'``, ...) or on an
   inert placeholder, ``_codecs.encode`` only for latin-1 (protocol 2's encoding of ``bytes``);
2. any other global of a library that writes checkpoints (torch, numpy, mmengine, XTuner, DeepSpeed, transformers,
   peft, collections, ...) becomes an inert placeholder: calling it or restoring its state only records the
   arguments, so a config object or an enum in the metadata loads as a record and the tensors load as tensors;
3. any other global (``os.system``, ``builtins.eval``, ``subprocess.*``, ``functools.partial``, ...) refuses the
   whole file with :class:`RefusedPickleError` naming it, before anything is called.

TorchScript archives (which ``torch.load`` would hand to ``torch.jit.load``) and the pre-1.6 legacy format are
refused too. Large files are memory-mapped (``torch.load(mmap=True)``), so a 2 GB checkpoint is not read into memory
before its tensors are used.
"""
import _compat_pickle
import os.path as osp
import pickle
import types
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Tuple

import numpy as np
import torch

from .data_files import CorruptCheckpointError, named_file_errors

# Placeholders stand for globals of these packages (and their sub-modules); they are never imported or called.
INERT_PACKAGES = ("torch", "numpy", "mmengine", "xtuner", "deepspeed", "transformers", "peft", "accelerate",
                  "collections", "copyreg", "datetime", "enum", "pathlib", "mg_llava")


class RefusedPickleError(pickle.UnpicklingError):
    """A checkpoint file names something the safe loader does not reconstruct; nothing from it was run."""


class InertObject:
    """What calling a placeholder gives: a record of the arguments and state, with no behaviour of its own."""

    pickled_global = "?"

    def __new__(cls, *args, **kwargs):
        record = object.__new__(cls)
        record.args, record.kwargs, record.state, record.items, record.list = args, kwargs, None, {}, []
        return record

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.list.append(value)

    def extend(self, values):
        self.list.extend(values)

    def __repr__(self):
        return f"<inert {self.pickled_global}{self.args!r}>"


def _placeholder(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (InertObject,), {"pickled_global": qualname, "__module__": __name__})


def _statistics_getattr(target, name):
    """``builtins.getattr`` as pickles of stock mmengine use it: a statistic of ``HistoryBuffer`` (or an attribute
    of a placeholder, which is another placeholder); anything else is refused."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if isinstance(target, type) and issubclass(target, InertObject):
        return _placeholder(f"{target.pickled_global}.{name}")
    if target is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(HistoryBuffer, name)
    raise RefusedPickleError(f"the pickle calls getattr({getattr(target, '__name__', type(target).__name__)}, "
                             f"{name!r})")


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: ``encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickleError(f"the pickle calls _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _no_hooks(backward_hooks):
    if backward_hooks:
        raise RefusedPickleError("a tensor in the pickle carries backward hooks")
    return OrderedDict()


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                           _no_hooks(backward_hooks), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return torch._utils._rebuild_parameter(data, requires_grad, _no_hooks(backward_hooks))


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "UntypedStorage"): torch.UntypedStorage,  # a storage type in the archive's persistent ids
        ("builtins", "getattr"): _statistics_getattr,
        ("_codecs", "encode"): _latin1_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("mmengine.logging.history_buffer", "HistoryBuffer"): HistoryBuffer,
    }
    allowed.update({("builtins", kind.__name__): kind for kind in (set, frozenset, complex, slice, bytearray)})
    allowed.update({("torch", name): value for name, value in vars(torch).items() if isinstance(value, torch.dtype)})
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 files
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"):
        kind = type(np.dtype(name))
        allowed[(kind.__module__, kind.__name__)] = kind
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` follows the three rules of the module docstring."""

    _allowed = None

    def find_class(self, module: str, name: str):
        # Protocol 2 (torch.save's) writes Python 2 names (``__builtin__``); map them as pickle itself does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        if module.split(".", 1)[0] in INERT_PACKAGES:
            return _placeholder(f"{module}.{name}")
        raise RefusedPickleError(f"the pickle names {module}.{name}")


# What torch.load(pickle_module=...) needs: the Unpickler class (torch subclasses it to map storage types and sets
# persistent_load to read the storages from the archive).
_restricted_pickle = types.SimpleNamespace(__name__="mg_llava.safe_load", Unpickler=RestrictedUnpickler,
                                           load=None, UnpicklingError=pickle.UnpicklingError)


def safe_load(path: str, map_location="cpu", mmap: bool = True) -> Any:
    """Read the checkpoint file ``path`` with the restricted unpickler (see the module docstring).

    Args:
        path: a file written by ``torch.save`` (zip format, torch >= 1.6).
        map_location: as for ``torch.load``.
        mmap: memory-map the file (tensors are read when used). Leave it off for a file that may be rewritten in
            place while its tensors are alive (a resume checkpoint).

    Raises:
        RefusedPickleError: the file names a global outside the rules, is a TorchScript archive or uses the legacy
            format; the message names the file and what was refused. Nothing from the file has run.
        CorruptCheckpointError: the file is truncated or damaged (a cut-off zip, a broken record or pickle).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    problem = _not_a_zip_checkpoint(path)
    if problem is not None:
        raise problem
    with named_file_errors(path, "checkpoint", CorruptCheckpointError):
        with zipfile.ZipFile(path) as archive:
            if any(osp.basename(name) == "constants.pkl" for name in archive.namelist()):
                raise RefusedPickleError(f"{path}: a TorchScript archive (it holds code), not a checkpoint")
    try:
        with named_file_errors(path, "checkpoint", CorruptCheckpointError):
            try:
                return torch.load(path, map_location=map_location, pickle_module=_restricted_pickle,
                                  weights_only=False,  # the pickle module is the restricted one above
                                  mmap=mmap)
            except (RuntimeError, AttributeError) as err:  # torch's zip reader; a damaged storage type name
                raise ValueError(str(err)) from err
    except RefusedPickleError as err:
        raise RefusedPickleError(
            f"{path}: refused ({err}). The safe loader reconstructs tensors, plain containers, numpy arrays and "
            f"training-framework records, and nothing else; fully unpickling this file would run code it "
            f"names. Load it only if you trust it (chat/evaluation: --allow-unsafe-pickle).") from None


def _not_a_zip_checkpoint(path: str):
    """None for a zip file; else the error to raise: a cut-off zip is corrupt, a legacy pickle is refused."""
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return CorruptCheckpointError(f"checkpoint {path}: truncated or damaged (a zip archive without a readable "
                                      f"central directory)", path)
    if head[:1] == b"\x80":  # a pickle protocol marker: torch's legacy (pre-1.6) format
        return RefusedPickleError(f"{path}: legacy pre-1.6 torch format; the safe loader reads only the zip format")
    return CorruptCheckpointError(f"checkpoint {path}: not a torch checkpoint (starts with {head!r})", path)


def mmengine_load_from_local(filename: str, map_location=None):
    """mmengine's loader for local paths (``CheckpointLoader`` scheme ``''``: ``--resume``, ``load_from``), made
    safe. Not memory-mapped: training may later write a checkpoint of the same name."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return safe_load(filename, map_location=map_location, mmap=False)


__all__ = ["INERT_PACKAGES", "InertObject", "RefusedPickleError", "RestrictedUnpickler", "mmengine_load_from_local",
           "safe_load"]
