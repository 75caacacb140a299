"""A training work dir as a checkpoint: its last checkpoint, so stage 2 can name stage 1 by its work dir.

mmengine's ``CheckpointHook`` writes each checkpoint as ``<work_dir>/iter_N.pth`` (``epoch_N.pth`` by epoch; a folder
under DeepSpeed) and the path of the newest into ``<work_dir>/last_checkpoint``. The iteration count of a run depends
on the number of processes, so a stage-2 config that names ``iter_N.pth`` breaks when stage 1 ran on another
number of them; naming the work dir does not.
"""
import os
import os.path as osp
import re

from .checkpoint import DEEPSPEED_MODEL_FILE, ZERO3_WEIGHTS_FILE

LAST_CHECKPOINT_FILE = "last_checkpoint"
CHECKPOINT_NAME = re.compile(r"^(iter|epoch)_(\d+)\.pth$")


def checkpoints(work_dir: str) -> list:
    """``iter_N.pth`` / ``epoch_N.pth`` entries (files or DeepSpeed folders) of ``work_dir``, oldest first."""
    found = [(m.group(1) == "iter", int(m.group(2)), name) for name in os.listdir(work_dir)
             for m in [CHECKPOINT_NAME.match(name)] if m]
    return [osp.join(work_dir, name) for _, _, name in sorted(found)]


def is_checkpoint_folder(path: str) -> bool:
    """A DeepSpeed checkpoint folder (mmengine's ``iter_N.pth/``): model states in it, in its ``latest`` tag or in
    a sub-folder, or the gathered ZeRO-3 weights."""
    if any(osp.isfile(osp.join(path, name)) for name in (DEEPSPEED_MODEL_FILE, ZERO3_WEIGHTS_FILE, "latest")):
        return True
    return any(osp.isfile(osp.join(path, d, DEEPSPEED_MODEL_FILE)) for d in os.listdir(path))


def is_work_dir(path: str) -> bool:
    """A folder that is not a checkpoint itself: a training work dir (or an empty one), which stands for its last
    checkpoint."""
    return osp.isdir(path) and not CHECKPOINT_NAME.match(osp.basename(path.rstrip("/"))) \
        and not is_checkpoint_folder(path)


def last_checkpoint(work_dir: str) -> str:
    """The newest checkpoint of a training work dir: the one ``last_checkpoint`` names (found in ``work_dir`` by its
    name when the run's absolute path no longer exists), else the highest ``iter_N.pth``. Raises
    ``FileNotFoundError`` naming the folder when it holds none."""
    marker = osp.join(work_dir, LAST_CHECKPOINT_FILE)
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        for candidate in (named, osp.join(work_dir, osp.basename(named.rstrip("/")))):
            if named and osp.exists(candidate):
                return candidate
    found = checkpoints(work_dir) if osp.isdir(work_dir) else []
    if not found:
        raise FileNotFoundError(
            f"{work_dir}: no checkpoint in this work dir (no {LAST_CHECKPOINT_FILE} file naming an existing one, no "
            f"iter_N.pth): train the stage that writes it first, or point pretrained_pth at a checkpoint file")
    return found[-1]


def resolve_checkpoint(path: str) -> str:
    """``path`` itself, or the last checkpoint when it is a training work dir."""
    return last_checkpoint(path) if is_work_dir(path) else path


__all__ = ["checkpoints", "is_checkpoint_folder", "is_work_dir", "last_checkpoint", "resolve_checkpoint"]
