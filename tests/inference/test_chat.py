"""Chat through tools/chat.py from a trained tiny checkpoint: one turn, several turns, text only, streaming, boxes
from a box file or found on the fly, and the errors a user can run into."""
import os.path as osp

import pytest
import torch

from inference_helpers import MEMORISED, MEMORISED_TEXT
from tool_helpers import load_tool


@pytest.fixture(scope="module")
def chat():
    return load_tool("chat").main


def image_args(tiny_data, name=MEMORISED[0]):
    return ["--image", osp.join(tiny_data["image_folder"], f"{name}.jpg"), "--boxes", tiny_data["boxes"],
            "--box-id", name]


def test_one_turn_answers_what_the_model_learned_and_streams_it(chat, model_paths, trained_checkpoint, tiny_data,
                                                                capsys):
    name, question, answer = MEMORISED
    answers = chat(["--checkpoint", trained_checkpoint, *model_paths, *image_args(tiny_data), "--prompt", question,
                    "--max-new-tokens", "12"])
    assert answers == [answer]
    out = capsys.readouterr().out
    assert "[image" in out and "2 object boxes]" in out
    assert f"ASSISTANT: {answer}\n" in out  # streamed token by token by the TextStreamer


def test_multi_turn_keeps_the_history(chat, model_paths, trained_checkpoint, tiny_data, loaded):
    from mg_llava.dataset import load_box_file
    from mg_llava.inference import ChatSession

    name, question, answer = MEMORISED
    answers = chat(["--checkpoint", trained_checkpoint, *model_paths, *image_args(tiny_data), "--prompt", question,
                    "--prompt", "How many kinds of objects are marked?", "--max-new-tokens", "8"])
    assert len(answers) == 2 and answers[0] == answer and answers[1]
    # the second turn's input is the first exchange followed by the new question, with one image
    session = ChatSession(loaded, image=osp.join(tiny_data["image_folder"], f"{name}.jpg"),
                          boxes=(load_box_file(tiny_data["boxes"]), name), max_new_tokens=8)
    first = session.sample(question)["input_ids"]
    session.ask(question)
    second = session.sample("How many kinds of objects are marked?")["input_ids"]
    assert int((second == -200).sum()) == 1
    assert torch.equal(second[:len(first)], first)
    assert loaded.tokenizer.decode(second[len(first):]).startswith(answer)


def test_text_only_chat(chat, model_paths, trained_checkpoint):
    question, answer = MEMORISED_TEXT
    answers = chat(["--checkpoint", trained_checkpoint, *model_paths, "--prompt", question, "--prompt",
                    "And three?", "--max-new-tokens", "6"])
    assert len(answers) == 2 and answers[0] == answer


def test_interactive_reads_stdin_until_exit(chat, model_paths, trained_checkpoint, monkeypatch):
    lines = iter(["What is two plus two?", "reset", "", "exit", "never asked"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    answers = chat(["--checkpoint", trained_checkpoint, *model_paths, "--max-new-tokens", "4"])
    assert len(answers) == 1


def test_boxes_found_on_the_fly(chat, model_paths, trained_checkpoint, tiny_models, tiny_data, capsys):
    """A fixed vocabulary + the tiny OWLv2 (random weights: its boxes are meaningless, the path is what counts)."""
    name, question, _ = MEMORISED
    answers = chat(["--checkpoint", trained_checkpoint, *model_paths, "--image",
                    osp.join(tiny_data["image_folder"], f"{name}.jpg"), "--detector", tiny_models["owlv2"],
                    "--tagger", "fixed", "--vocabulary", "cat,dog", "--score-threshold", "0.0",
                    "--prompt", question, "--max-new-tokens", "4"])
    assert len(answers) == 1
    out = capsys.readouterr().out
    boxes = int(out.split("[image ")[1].split(": ")[1].split(" object")[0])
    assert boxes > 0  # threshold 0: every kept OWLv2 prediction becomes a box, after the box rules


def test_user_errors_are_named(chat, model_paths, trained_checkpoint, tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="image not found: .*missing.jpg"):
        chat(["--checkpoint", trained_checkpoint, *model_paths, "--image", str(tmp_path / "missing.jpg")])
    image = osp.join(tiny_data["image_folder"], "chelsea.jpg")
    with pytest.raises(SystemExit, match="exactly one of --boxes, --detector .* or --no-boxes; got none"):
        chat(["--checkpoint", trained_checkpoint, *model_paths, "--image", image, "--prompt", "hi"])
    with pytest.raises(SystemExit, match="has no entry 'zebra'"):
        chat(["--checkpoint", trained_checkpoint, *model_paths, "--image", image, "--boxes", tiny_data["boxes"],
              "--box-id", "zebra", "--prompt", "hi"])
    with pytest.raises(SystemExit, match="give --visual-encoder --template"):
        chat(["--checkpoint", trained_checkpoint, "--llm", "x"])
