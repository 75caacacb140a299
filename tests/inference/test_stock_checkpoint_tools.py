"""A checkpoint written by stock mmengine (the released files' format) through chat, evaluation and export, with the
released box rule chosen automatically for it; a malicious checkpoint is refused by the tools and never runs."""
import json
import os.path as osp

import pytest
import torch

from eval_helpers import boxes_for, write_mc_tsv
from stock_checkpoints import Payload
from tool_helpers import load_tool


@pytest.fixture(scope="module")
def paths_route(model_paths):
    """The model options without ``--box-rule``: how a released checkpoint is given to the tools."""
    position = model_paths.index("--box-rule")
    return model_paths[:position] + model_paths[position + 2:]


def test_stock_checkpoint_through_chat_evaluation_and_export(stock_checkpoints, paths_route, tiny_data, tmp_path,
                                                              capsys):
    from mg_llava.inference import load_exported

    paths, state_dict = stock_checkpoints
    image = osp.join(tiny_data["image_folder"], "coffee.jpg")
    answers = load_tool("chat").main(["--checkpoint", paths["mmengine"], *paths_route, "--image", image, "--no-boxes",
                                      "--prompt", "What is in the image?", "--max-new-tokens", "3"])
    assert len(answers) == 1
    out = capsys.readouterr().out
    assert "1 object boxes]" in out  # --no-boxes under the released rule: its dummy box

    result = load_tool("evaluate").main([
        "--checkpoint", paths["mmengine_ddp"], *paths_route, "--benchmark", write_mc_tsv(tmp_path / "mc.tsv"),
        "--format", "mmbench", "--boxes", boxes_for(["10", "11", "13"], tmp_path), "--batch-size", "4",
        "--max-new-tokens", "2", "--num-workers", "0", "--no-progress", "--out-dir", str(tmp_path / "eval")])
    assert result["num_items"] == 4

    exported = load_tool("export").main(["--checkpoint", paths["deepspeed_latest"], *paths_route,
                                         "--out-dir", str(tmp_path / "exp")])
    with open(osp.join(exported, "mg_llava.json")) as f:
        assert json.load(f)["boxes"]["rule"] == "released"
    back = load_exported(exported, device="cpu")
    assert back.preprocessor.box_rule == "released"
    weights = back.model.state_dict()
    assert all(torch.equal(weights[k], v.float()) for k, v in state_dict.items())
    assert not osp.exists(paths["optimizer_marker"])

    clean = load_tool("export").main(["--checkpoint", paths["plain"], *paths_route, "--box-rule", "clean",
                                      "--out-dir", str(tmp_path / "clean")])
    with open(osp.join(clean, "mg_llava.json")) as f:
        assert json.load(f)["boxes"]["rule"] == "clean"


def test_malicious_checkpoint_is_refused_by_the_tools(stock_checkpoints, paths_route, tmp_path):
    from mg_llava.inference import UnsafeCheckpointError

    marker = tmp_path / "PAYLOAD_RAN"
    path = str(tmp_path / "iter_100.pth")
    torch.save(dict(meta=dict(iter=100, hook=Payload(f"touch {marker}")), state_dict=stock_checkpoints[1]), path)
    calls = (("chat", ["--prompt", "Hi", "--max-new-tokens", "1"]),
             ("export", ["--out-dir", str(tmp_path / "exp")]))
    for tool, extra in calls:
        with pytest.raises(UnsafeCheckpointError, match=r"(?s)--allow-unsafe-pickle.*names posix\.system"):
            load_tool(tool).main(["--checkpoint", path, *paths_route, *extra])
        assert not marker.exists(), tool
    assert not osp.exists(tmp_path / "exp")
