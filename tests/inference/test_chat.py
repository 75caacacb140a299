"""Chat: one turn, several turns and text only, from a trained tiny checkpoint, through tools/chat.py."""
import importlib.util
import os.path as osp
from pathlib import Path

import pytest

from conftest import MEMORISED

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_turn_answers_what_the_model_learned(loaded, tiny_data):
    from mg_llava.dataset import load_box_file
    from mg_llava.inference import ChatSession

    name, question, answer = MEMORISED
    session = ChatSession(loaded, image=osp.join(tiny_data["image_folder"], f"{name}.jpg"),
                          boxes=(load_box_file(tiny_data["boxes"]), name), max_new_tokens=12)
    assert session.num_boxes == 2
    assert session.ask(question) == answer
