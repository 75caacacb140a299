"""Reading weights before a model is built, and loading them into one: trainable-weight checkpoints (our
``state_dict()`` files, stock mmengine/XTuner training checkpoints, DeepSpeed folders, the released ``.pth`` files)
and an export folder's safetensors files.

Checkpoints load through the restricted unpickler of :mod:`mg_llava.safe_load`, which runs nothing a file names. A
file it refuses (one that names e.g. ``os.system``) is refused with :class:`UnsafeCheckpointError` unless
``allow_unsafe_pickle=True`` is passed explicitly (``--allow-unsafe-pickle``): full unpickling runs code from the file.
"""
import contextlib
import glob
import os.path as osp
from typing import Optional

import torch
from mmengine.logging import print_log

from mg_llava.data_files import CorruptCheckpointError, DataFileError, named_file_errors, read_json
from mg_llava.model import AVGLLaVAModel, MGLLaVAModel
from mg_llava.model.checkpoint import ANYRES_PREFIXES, ROUTER_PREFIXES, VISION_PREFIXES, load_trainable_state_dict
from mg_llava.safe_load import RefusedPickleError

from .spec import SPEC_VERSION, check_model_paths

SPEC_FILE = "mg_llava.json"
MODULES_FILE = "mg_llava_modules.safetensors"
LLM_DIR = "llm"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that only full unpickling can read; the message says how to opt in."""


def vision_prefixes(model) -> tuple:
    """State-dict prefixes of the trained modules an export holds besides the LLM (the router of AVG-LLaVA too)."""
    return (VISION_PREFIXES + (ROUTER_PREFIXES if isinstance(model, AVGLLaVAModel) else ())
            + (ANYRES_PREFIXES if getattr(model, "anyres", None) is not None else ()))


def _full_unpickle(path: str):
    """Full unpickling of one checkpoint file (it runs what the file names); only on explicit opt-in."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, AttributeError, ImportError) as corrupt:  # torch's zip reader; a damaged name
        raise ValueError(str(corrupt)) from corrupt


def load_state_dict_checked(model: MGLLaVAModel, state_dict: dict, source: str) -> None:
    """Load trainable weights; keys the model lacks are an error (as ``load_trainable``)."""
    model_keys = set(torch.nn.Module.state_dict(model))
    unexpected = sorted(set(state_dict) - model_keys)
    if unexpected:
        raise ValueError(f"{source}: {len(unexpected)} of {len(state_dict)} keys are not in this model, "
                         f"e.g. {unexpected[:5]}")
    model.load_state_dict(state_dict, strict=False)


def read_checkpoint(path: str, allow_unsafe_pickle: bool = False) -> dict:
    """The trainable state dict of a checkpoint (any layout :func:`load_trainable_state_dict` reads), read BEFORE
    any model is built, so a missing, corrupt or refused file costs seconds, not an LLM load.

    Raises ``FileNotFoundError``, :class:`~mg_llava.data_files.CorruptCheckpointError` (truncated or damaged, also
    with ``allow_unsafe_pickle``) or :class:`UnsafeCheckpointError` (names a global the safe loader refuses; the
    message names it).
    """
    try:
        return load_trainable_state_dict(path)
    except RefusedPickleError as err:
        if not allow_unsafe_pickle:
            raise UnsafeCheckpointError(
                f"{path} names Python objects the safe loader does not reconstruct (tensors, containers and "
                f"training-framework records load; see mg_llava/safe_load.py). If you trust the file, pass "
                f"--allow-unsafe-pickle (full unpickling runs code from the file).\n({str(err).splitlines()[0]})"
            ) from err
        print_log(f"{path}: loading with full unpickling (--allow-unsafe-pickle)", "current")
        with named_file_errors(path, "checkpoint", CorruptCheckpointError):
            return load_trainable_state_dict(path, unpickle=_full_unpickle)


def load_checkpoint(model: MGLLaVAModel, path: str, allow_unsafe_pickle: bool = False) -> None:
    """Load a trainable-weight checkpoint (any layout :func:`load_trainable_state_dict` reads) into ``model``."""
    load_state_dict_checked(model, read_checkpoint(path, allow_unsafe_pickle), path)


def check_safetensors(path: str, what: str) -> None:
    """Parse a safetensors file's header and check its tensors fit in the file (nothing is read)."""
    from safetensors import safe_open

    if not osp.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    with named_file_errors(path, what), _safetensors_errors(path, what):
        with safe_open(path, "pt") as f:
            list(f.keys())


def read_safetensors(path: str, what: str) -> dict:
    from safetensors.torch import load_file

    check_safetensors(path, what)
    with named_file_errors(path, what), _safetensors_errors(path, what):
        return load_file(path)


@contextlib.contextmanager
def _safetensors_errors(path: str, what: str):
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:  # header too large, truncated, offsets outside the file, bad JSON header
        raise DataFileError(f"{what} {path}: damaged safetensors file ({err})", path) from err


def load_vision_modules(model: MGLLaVAModel, state_dict, path: str) -> None:
    """The fusion, both projectors (and an AVG-LLaVA's router) from an export's safetensors file; the key sets must
    match exactly."""
    expected = {k for k in torch.nn.Module.state_dict(model) if k.startswith(vision_prefixes(model))}
    if set(state_dict) != expected:
        raise ValueError(f"{path}: keys differ from the model's; missing {sorted(expected - set(state_dict))[:5]}, "
                         f"unexpected {sorted(set(state_dict) - expected)[:5]}")
    model.load_state_dict(state_dict, strict=False)


def is_export(path: Optional[str]) -> bool:
    return path is not None and osp.isfile(osp.join(path, SPEC_FILE))


def read_export(folder: str):
    """``(spec, vision-module state dict)`` of an export folder, every file checked before a model is built:
    the spec parses, the vision modules load, each LLM safetensors shard has a sound header, the LLM folder exists."""
    if not is_export(folder):
        raise FileNotFoundError(f"{folder} is not an MG-LLaVA export (no {SPEC_FILE})")
    spec_path = osp.join(folder, SPEC_FILE)
    with named_file_errors(spec_path, "export spec"):
        spec = read_json(spec_path, "export spec")
        if not isinstance(spec, dict):
            raise ValueError(f"{spec_path}: expected a JSON object, got {type(spec).__name__}")
        if spec.get("format_version") != SPEC_VERSION:
            raise ValueError(f"{spec_path}: format_version {spec.get('format_version')}, expected {SPEC_VERSION}")
        spec = dict(spec, llm=osp.join(osp.abspath(folder), spec["llm"]))
        if not osp.isdir(spec["llm"]):
            raise ValueError(f"{spec_path}: names the LLM folder {spec['llm']}, which does not exist")
    modules = read_safetensors(osp.join(folder, MODULES_FILE), "export's vision modules")
    for shard in sorted(glob.glob(osp.join(spec["llm"], "*.safetensors"))):
        check_safetensors(shard, "export's LLM shard")
    check_model_paths(spec)
    return spec, modules
