import os
import sys

# Tests never touch the network: every checkpoint is built offline by mg_llava.testing.tiny_models.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process, in the pytest process and every subprocess (set before torch is imported). The
# suite runs on 2 shared cores: OpenMP threads of processes that share them wait on each other, and a tiny training
# run took 3-5x longer with 2 threads than with 1 under load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `xtuner train` re-launches `python`/`torchrun` from PATH: make that the interpreter running the tests.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of the tiny checkpoints (built once per test session): clip, convnext, owlv2, llm_<family>."""
    from mg_llava.testing.tiny_models import build_all

    return build_all(str(tmp_path_factory.mktemp("tiny_models")))


@pytest.fixture(scope="session")
def stock_checkpoints(tiny_models, tmp_path_factory):
    """A stage-2 checkpoint (SPEC 4 keys at the tiny sizes + the tiny vicuna LLM, bf16) written in every layout of
    ``tests/stock_checkpoints.py`` by stock mmengine in a process that never imports mg_llava.
    Returns ``(paths by layout, state_dict)``."""
    import torch
    from transformers import AutoModelForCausalLM

    from mg_llava.testing.released import released_shapes
    from stock_checkpoints import write_stock_checkpoints

    generator = torch.Generator().manual_seed(5)
    state_dict = {k: (0.05 * torch.randn(s, generator=generator)).to(torch.bfloat16)
                  for k, s in released_shapes().items()}
    llm = AutoModelForCausalLM.from_pretrained(tiny_models["llm_vicuna"])
    state_dict.update({"llm." + k: (v + 0.01 * torch.randn(v.shape, generator=generator)).to(torch.bfloat16)
                       for k, v in llm.state_dict().items()})
    return write_stock_checkpoints(state_dict, str(tmp_path_factory.mktemp("stock"))), state_dict


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory):
    """The tiny synthetic video dataset (mg_llava.testing.tiny_video_dataset), written once per test session."""
    from mg_llava.testing.tiny_video_dataset import build_tiny_video_dataset

    return build_tiny_video_dataset(str(tmp_path_factory.mktemp("tiny_videos")))


@pytest.fixture(scope="session")
def frame_order_clips(tmp_path_factory):
    """The frame-order clips (mg_llava.testing.frame_order_dataset), written once per test session."""
    from mg_llava.testing.frame_order_dataset import build_frame_order_dataset

    return build_frame_order_dataset(str(tmp_path_factory.mktemp("frame_order")))


# ---------------------------------------------------------------------------------------------------------------
# No quiet skips: the run ends with one line naming what did not run, why, and what to install (the skip reasons
# carry the install hint). A test may skip only for a missing machine capability (a GPU, root, a Debian package),
# never for a Python package that `make setup` installs; those are plain imports, so a missing one is an error.


def _skip_reason(report) -> str:
    # A skip's longrepr is (file, line, "Skipped: <reason>"), also after pytest-xdist ships it to the controller.
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def skip_summary(reports) -> str:
    """One line: how many tests skipped, grouped by reason (most frequent first), e.g.
    ``skip summary: 3 skipped: 2 x no headless browser: apt-get install ...; 1 x needs a CUDA device``."""
    import collections

    reasons = collections.Counter(_skip_reason(r) for r in reports)
    if not reasons:
        return "skip summary: nothing skipped"
    parts = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
    return f"skip summary: {sum(reasons.values())} skipped: {parts}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Runs in the controller under pytest-xdist, whose stats hold every worker's reports.
    reports = [r for r in terminalreporter.stats.get("skipped", []) if getattr(r, "skipped", False)]
    terminalreporter.write_line(skip_summary(reports), yellow=bool(reports), bold=True)
