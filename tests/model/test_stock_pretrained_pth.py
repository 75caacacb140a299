"""Checkpoints written by stock mmengine (the released files' format) through ``pretrained_pth`` and the converter,
read by the safe loader; a malicious file is refused there too."""
import os.path as osp
import runpy

import pytest
import torch

from mg_llava.safe_load import RefusedPickleError
from stock_checkpoints import Payload

TOOL = osp.join(osp.dirname(__file__), "..", "..", "tools", "convert_released_checkpoint.py")


@pytest.mark.parametrize("layout", ["mmengine", "deepspeed_latest"])
def test_stock_checkpoint_as_pretrained_pth(make_model, stock_checkpoints, layout):
    paths, state_dict = stock_checkpoints
    model = make_model(pretrained_pth=paths[layout])
    ours = model.state_dict()
    assert set(ours) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value.float()), key


def test_converter_reads_a_stock_deepspeed_folder(stock_checkpoints, tmp_path, capsys):
    paths, state_dict = stock_checkpoints
    dst = str(tmp_path / "converted.pth")
    runpy.run_path(TOOL, run_name="convert")["main"]([paths["deepspeed_mmengine"], dst])
    assert '"has_llm": true' in capsys.readouterr().out
    converted = torch.load(dst, weights_only=True)["state_dict"]
    assert set(converted) == set(state_dict)
    assert all(torch.equal(converted[k], v) for k, v in state_dict.items())
    assert not osp.exists(paths["optimizer_marker"])


def test_malicious_pretrained_pth_is_refused(make_model, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    path = str(tmp_path / "iter_1.pth")
    torch.save(dict(meta=dict(iter=1), state_dict={}, message_hub=Payload(f"touch {marker}")), path)
    with pytest.raises(RefusedPickleError, match=r"refused \(the pickle names posix\.system\)"):
        make_model(freeze_llm=True, pretrained_pth=path)
    assert not marker.exists()
