"""Starting `xtuner train` (and what it starts) from a tool run by a virtual environment's interpreter.

`xtuner train` re-launches `python` / `torchrun` from PATH, so `.venv/bin/python tools/demo.py` without an activated
environment would train with whatever interpreter PATH names first (or find no `xtuner` at all). Putting this
interpreter's folder first on PATH makes the whole chain run in the environment the tool runs in.
"""
import os
import os.path as osp
import sys
from typing import Mapping, Optional


def interpreter_env(env: Optional[Mapping[str, str]] = None) -> dict:
    """``env`` (default: ``os.environ``) with the running interpreter's folder first on PATH."""
    env = dict(os.environ if env is None else env)
    folder = osp.dirname(sys.executable)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != folder]
    env["PATH"] = os.pathsep.join([folder, *rest])
    return env


__all__ = ["interpreter_env"]
