"""A released-format checkpoint (SPEC 4 key names, bf16, DeepSpeed folder, tiny shapes) through chat, evaluation
and export."""
import json
import os.path as osp

import pytest
import torch

from eval_helpers import boxes_for, write_mc_tsv
from tool_helpers import load_tool


@pytest.fixture(scope="module")
def released_loaded(spec, released_checkpoint):
    from mg_llava.inference import load_from_spec

    return load_from_spec(spec, released_checkpoint[0], device="cpu")


def test_released_weights_land_in_the_model(released_loaded, released_checkpoint):
    _, state_dict = released_checkpoint
    ours = released_loaded.model.state_dict()
    assert set(ours) == set(state_dict)  # the file's keys are exactly the model's trainable keys
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value.float()), key


def test_released_checkpoint_through_chat_evaluation_and_export(released_loaded, released_checkpoint, model_paths,
                                                                tiny_data, tmp_path, capsys):
    from mg_llava.inference import load_exported
    from mg_llava.inference.generation import first_token_logits

    folder = released_checkpoint[0]
    image = osp.join(tiny_data["image_folder"], "coffee.jpg")
    chat_args = ["--image", image, "--boxes", tiny_data["boxes"], "--box-id", "coffee", "--prompt",
                 "What is in the image?", "--max-new-tokens", "5"]
    answers = load_tool("chat").main(["--checkpoint", folder, *model_paths, *chat_args])
    assert len(answers) == 1 and answers[0]

    tsv = write_mc_tsv(tmp_path / "mc.tsv")
    result = load_tool("evaluate").main([
        "--checkpoint", folder, *model_paths, "--benchmark", tsv, "--format", "mmbench", "--circular",
        "--boxes", boxes_for(["10", "11", "13"], tmp_path), "--batch-size", "4", "--max-new-tokens", "3",
        "--num-workers", "0", "--no-progress", "--out-dir", str(tmp_path / "eval")])
    assert result["num_items"] == 11 and result["metrics"]["num_questions"] == 4  # row 12 reuses row 10's boxes
    with open(tmp_path / "eval" / "metrics.json") as f:
        assert json.load(f)["metrics"] == result["metrics"]

    exported = load_tool("export").main(["--checkpoint", folder, *model_paths, "--out-dir", str(tmp_path / "exp")])
    back = load_exported(exported, device="cpu")
    sample = released_loaded.preprocessor.sample(
        "What is in the image?", (), released_loaded.preprocessor.prepare_image(image, None))
    assert torch.equal(first_token_logits(back.model, back.tokenizer, [sample]),
                       first_token_logits(released_loaded.model, released_loaded.tokenizer, [sample]))


def test_a_checkpoint_of_another_architecture_is_refused(spec, released_checkpoint, tmp_path):
    from mg_llava.inference import load_from_spec

    _, state_dict = released_checkpoint
    path = str(tmp_path / "wrong.pth")
    torch.save({**state_dict, "vision_tower.patch_embed.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="keys are not in this model, e.g. \\['vision_tower.patch_embed.weight'\\]"):
        load_from_spec(spec, path, device="cpu")
