import os
import sys

# Tests never touch the network: every checkpoint is built offline by mg_llava.testing.tiny_models.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `xtuner train` re-launches `python`/`torchrun` from PATH: make that the interpreter running the tests.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of the tiny checkpoints (built once per test session): clip, convnext, owlv2, llm_<family>."""
    from mg_llava.testing.tiny_models import build_all

    return build_all(str(tmp_path_factory.mktemp("tiny_models")))


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory):
    """The tiny synthetic video dataset (mg_llava.testing.tiny_video_dataset), written once per test session."""
    from mg_llava.testing.tiny_video_dataset import build_tiny_video_dataset

    return build_tiny_video_dataset(str(tmp_path_factory.mktemp("tiny_videos")))
