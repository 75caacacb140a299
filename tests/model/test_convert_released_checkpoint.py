import os
import runpy

import torch

from mg_llava.model import load_trainable_state_dict

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "convert_released_checkpoint.py")


def test_deepspeed_release_converts_and_loads(make_model, released, tmp_path, capsys):
    state_dict = released.state_dict()
    src, dst = released.save_deepspeed(state_dict, str(tmp_path)), str(tmp_path / "converted.pth")
    runpy.run_path(TOOL, run_name="convert")["main"]([src, dst, "--dtype", "float32"])
    assert '"llm_hidden_size": 32' in capsys.readouterr().out
    converted = torch.load(dst, weights_only=True)
    assert converted["meta"]["box_channels"] == 600
    assert all(v.dtype == torch.float32 for v in converted["state_dict"].values())

    model = make_model(freeze_llm=True)
    model.load_trainable(dst)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_dict[key].float()), key
    # ... and what the model saves converts back to the same tensors.
    again = str(tmp_path / "again.pth")
    torch.save(model.state_dict(), str(tmp_path / "saved.pth"))
    runpy.run_path(TOOL, run_name="convert")["main"]([str(tmp_path / "saved.pth"), again])
    for key, value in load_trainable_state_dict(again).items():
        assert torch.equal(value, converted["state_dict"][key]), key
