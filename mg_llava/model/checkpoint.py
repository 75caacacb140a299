"""Reading trainable-weight checkpoints: our own and the released MG-LLaVA files (SPEC 4).

The released files hold only trainable weights under ``projector.*``, ``bbox_projector.*``, ``fuse_module.*`` and
(stage 2) ``llm.*``. ``MGLLaVAModel`` uses the same module names, so the key map is the identity once the wrappers
are removed: mmengine's ``{'state_dict': ...}``, DeepSpeed's ``{'module': ...}`` and DDP's ``module.`` prefix.
Files are read with :func:`mg_llava.safe_load.safe_load`: stock trainer checkpoints load, and nothing they name runs.
:func:`load_trainable_state_dict` is the one checkpoint reader; the unpickler is its parameter (inference's
``--allow-unsafe-pickle`` passes full unpickling, with the same file layouts).
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Callable, Dict

import torch

from ..safe_load import safe_load

DEEPSPEED_MODEL_FILE = "mp_rank_00_model_states.pt"
ZERO3_WEIGHTS_FILE = "trainable_weights_16bit.pt"  # written by mg_llava.engine.ZeRO3TrainableWeightsHook
# State-dict prefixes of the trainable weights, the one list of them: what trains and is saved
# (``MGLLaVAModel.trainable_prefixes``), what an export holds besides the LLM (``inference.weights.vision_prefixes``).
# the fusion, both projectors and (Table 5b's cross-attention ablations only) the object-merging block
VISION_PREFIXES = ("fuse_module.", "projector.", "bbox_projector.", "object_merge.")
ROUTER_PREFIXES = ("router.",)  # AVG-LLaVA's router (its scaler has no weights)
ANYRES_PREFIXES = ("anyres.",)  # the learned row-end token of tiled images
LLM_PREFIXES = ("llm.",)  # stage 2 trains the LLM
RELEASED_PREFIXES = ("fuse_module.", "projector.", "bbox_projector.") + LLM_PREFIXES  # the released files' keys


def _deepspeed_model_file(folder: str) -> str:
    """The model-states file of a DeepSpeed checkpoint folder: ``<folder>/<tag>/`` (tag in ``latest``, or the only
    sub-folder that has one) or the folder itself (mmengine's ``iter_N.pth/`` folders)."""
    if osp.isfile(osp.join(folder, DEEPSPEED_MODEL_FILE)):
        return osp.join(folder, DEEPSPEED_MODEL_FILE)
    latest = osp.join(folder, "latest")
    if osp.isfile(latest):
        with open(latest) as f:
            tag = f.read().strip()
        path = osp.join(folder, tag, DEEPSPEED_MODEL_FILE)
        if not osp.isfile(path):
            raise FileNotFoundError(f"{latest} names tag {tag!r} but {path} does not exist")
        return path
    candidates = sorted(osp.join(folder, d, DEEPSPEED_MODEL_FILE) for d in os.listdir(folder)
                        if osp.isfile(osp.join(folder, d, DEEPSPEED_MODEL_FILE)))
    if len(candidates) != 1:
        raise FileNotFoundError(f"{folder} is not a DeepSpeed checkpoint: expected {DEEPSPEED_MODEL_FILE} in it, "
                                f"in the tag named by 'latest', or in exactly one sub-folder; found {candidates}")
    return candidates[0]


def _unwrap(checkpoint, source: str) -> Dict[str, torch.Tensor]:
    for key in ("state_dict", "module"):  # mmengine, DeepSpeed
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{source} holds no state dict of tensors (keys: {list(checkpoint)[:10]})")
    empty = [k for k, v in checkpoint.items() if v.numel() == 0][:5]
    if empty:
        raise ValueError(f"{source} has empty tensors ({empty}...): a ZeRO-3 partitioned checkpoint; "
                         f"train with ZeRO3TrainableWeightsHook (the ZeRO-3 configs do) or consolidate it with "
                         f"DeepSpeed's zero_to_fp32.py")
    return checkpoint


def checkpoint_file(path: str) -> str:
    """The file holding the weights of checkpoint ``path``: the file itself, or in a DeepSpeed folder the gathered
    ZeRO-3 weights (``ZERO3_WEIGHTS_FILE``) when present, else the model-states file (see
    :func:`_deepspeed_model_file`)."""
    if osp.isdir(path):
        # a ZeRO-3 folder holds weights only as shards (its model-states files have empty placeholders), so the
        # gathered file comes first: in the folder itself (mmengine's iter_N.pth/) or in the tag named by 'latest'
        tag = osp.join(path, "latest")
        folders = [path] + ([osp.join(path, open(tag).read().strip())] if osp.isfile(tag) else [])
        gathered = [osp.join(f, ZERO3_WEIGHTS_FILE) for f in folders if osp.isfile(osp.join(f, ZERO3_WEIGHTS_FILE))]
        return gathered[0] if gathered else _deepspeed_model_file(path)
    if osp.isfile(path):
        return path
    raise FileNotFoundError(f"no checkpoint at {path}")


def _safe_read(path: str) -> Any:
    return safe_load(path, map_location="cpu")


def load_trainable_state_dict(path: str, unpickle: Callable[[str], Any] = _safe_read
                              ) -> "OrderedDict[str, torch.Tensor]":
    """Read a plain state dict, an mmengine checkpoint or a DeepSpeed checkpoint folder into our key names.

    ``unpickle(file)`` reads one file; the default is the restricted unpickler
    (:func:`~mg_llava.safe_load.safe_load`, memory-mapped), so the trainer's whole checkpoint (message hub,
    optimizer, DeepSpeed config) may be in the file; only the model states are opened in a DeepSpeed folder. Strips
    the ``module.`` prefix that DDP-wrapped saves carry. The default raises
    :class:`~mg_llava.safe_load.RefusedPickleError` (an ``UnpicklingError``) for a file that names anything else.
    """
    source = checkpoint_file(path)
    state_dict = _unwrap(unpickle(source), source)
    out = OrderedDict()
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def describe_released(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Check a trainable state dict against the SPEC 4 layout and return its sizes.

    Returns ``{'llm_hidden_size': H, 'visual_channels': C_F, 'box_channels': C_B or None, 'fusion': {...} or None,
    'has_llm': bool, 'num_tensors': int}``; raises ``ValueError`` naming the keys and shapes that disagree.
    """
    unknown = [k for k in state_dict if not k.startswith(RELEASED_PREFIXES)]
    if unknown:
        raise ValueError(f"{len(unknown)} keys outside {RELEASED_PREFIXES}, e.g. {unknown[:5]}")

    def shape(key):
        if key not in state_dict:
            raise ValueError(f"missing {key}")
        return tuple(state_dict[key].shape)

    hidden, visual = shape("projector.model.0.weight")
    expect = {"projector.model.2.weight": (hidden, hidden)}
    box = None
    if any(k.startswith("bbox_projector.") for k in state_dict):
        box = shape("bbox_projector.model.0.weight")[1]
        expect.update({"bbox_projector.model.0.weight": (hidden, box),
                       "bbox_projector.model.2.weight": (hidden, hidden)})
    fusion = None
    if any(k.startswith("fuse_module.") for k in state_dict):
        high, gate = shape("fuse_module.slow_conv.weight")[0], shape("fuse_module.gate.0.weight")[0]
        kernel = shape("fuse_module.fast_conv.weight")[-1]
        fusion = dict(low_channels=visual, high_channels=high, gate_channels=gate, kernel_size=kernel)
        expect.update({
            "fuse_module.slow_conv.weight": (high, high, 1, 1), "fuse_module.slow_proj.weight": (visual, high, 1, 1),
            "fuse_module.fast_conv.weight": (visual, 1, kernel, kernel),
            "fuse_module.fast_proj.weight": (visual, visual, 1, 1),
            "fuse_module.gate.0.weight": (gate, 2 * visual), "fuse_module.gate.2.weight": (1, gate),
        })
    wrong = {k: (shape(k), v) for k, v in expect.items() if shape(k) != v}
    if wrong:
        raise ValueError("shapes disagree with SPEC 4 (key: (found, expected)): "
                         + ", ".join(f"{k}: {found} vs {want}" for k, (found, want) in wrong.items()))
    return dict(llm_hidden_size=hidden, visual_channels=visual, box_channels=box, fusion=fusion,
                has_llm=any(k.startswith("llm.") for k in state_dict), num_tensors=len(state_dict))
