"""The restricted unpickler: stock trainer checkpoints load in every layout, malicious files are refused before
anything runs, large files are memory-mapped, and mmengine's --resume reads a stock checkpoint through it."""
import copy
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

import mg_llava  # noqa: F401  (registers the safe loader for mmengine)
from mg_llava.model import load_trainable_state_dict
from mg_llava.safe_load import InertObject, RefusedPickleError, safe_load
from stock_checkpoints import LAYOUTS, Payload, regression_runner, write_stock_resume_checkpoint


@pytest.fixture(scope="module")
def stock(stock_checkpoints):
    return stock_checkpoints[0]


@pytest.fixture(scope="module")
def weights(stock_checkpoints):
    return stock_checkpoints[1]


def test_stock_files_are_what_weights_only_loading_refuses(stock):
    with pytest.raises(pickle.UnpicklingError, match="getattr"):
        torch.load(stock["mmengine"], weights_only=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_stock_layout_loads_exactly(stock, weights, layout):
    loaded = load_trainable_state_dict(stock[layout])
    assert set(loaded) == set(weights)
    for key, value in weights.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    assert not osp.exists(stock["optimizer_marker"])  # DeepSpeed's optimizer-state files are never opened


def test_the_whole_trainer_checkpoint_is_reconstructed(stock):
    from mmengine.logging import HistoryBuffer, MessageHub

    checkpoint = safe_load(stock["mmengine"])
    assert set(checkpoint) >= {"meta", "state_dict", "message_hub", "optimizer"}
    assert checkpoint["meta"]["iter"] == 2
    assert set(checkpoint["optimizer"]["state"]) and all(
        torch.equal(s["momentum_buffer"], torch.zeros_like(s["momentum_buffer"]))
        for s in checkpoint["optimizer"]["state"].values())
    hub = MessageHub.get_instance("safe_load_test")
    hub.load_state_dict(checkpoint["message_hub"])
    loss = hub.get_scalar("train/loss")
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 2 and loss.mean() == 0.0
    assert HistoryBuffer._statistics_methods["mean"] is HistoryBuffer.mean  # not taken from the file
    # DeepSpeed's config (an mmengine ConfigDict) is metadata: an inert record of what the file said
    states = safe_load(osp.join(stock["deepspeed_latest"], "global_step2", "mp_rank_00_model_states.pt"))
    assert isinstance(states["ds_config"], InertObject)
    assert states["ds_config"].pickled_global == "mmengine.config.config.ConfigDict"
    assert states["ds_config"].args[0]["zero_optimization"].args == ({"stage": 2},)


def _payloads(marker):
    """(global named, object, whether full unpickling of it creates ``marker``)."""

    class Exec:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    class Import:
        def __reduce__(self):
            return __import__, ("os",)

    return [("posix.system", Payload(f"touch {marker}"), True), ("builtins.exec", Exec(), True),
            ("builtins.__import__", Import(), False)]


@pytest.mark.parametrize("where", ["top", "meta", "state_dict"])
def test_malicious_files_are_refused_and_nothing_runs(weights, tmp_path, where):
    marker = tmp_path / "PAYLOAD_RAN"
    for name, payload, live in _payloads(marker):
        content = dict(meta=dict(iter=1), state_dict=dict(weights))
        if where == "top":
            content = payload
        elif where == "meta":
            content["meta"]["hook"] = payload
        else:
            content["state_dict"]["projector.model.0.weight"] = payload
        path = str(tmp_path / "evil.pth")
        torch.save(content, path)
        with pytest.raises(RefusedPickleError, match=rf"{path}: refused \(the pickle names {name}\).*"
                                                      rf"--allow-unsafe-pickle"):
            load_trainable_state_dict(path)
        assert not marker.exists(), name
        if live:  # the payload is real: full unpickling (what --allow-unsafe-pickle does) runs it
            torch.load(path, weights_only=False)
            assert marker.exists(), name
            marker.unlink()


def test_getattr_is_restricted_and_torchscript_refused(tmp_path):
    from mmengine.logging import HistoryBuffer

    class Method:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "update")

    path = str(tmp_path / "getattr.pth")
    torch.save(dict(x=Method()), path)
    with pytest.raises(RefusedPickleError, match=r"getattr\(HistoryBuffer, 'update'\)"):
        safe_load(path)
    script = str(tmp_path / "script.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(RefusedPickleError, match="TorchScript"):
        safe_load(script)


def test_a_large_file_is_memory_mapped(tmp_path):
    """A 2 GiB checkpoint loads without its size in memory (current or peak): the tensors stay in the mapped file.
    (A plain torch.load grows both by the file's size.)"""
    size = 2 * 1024 ** 3
    script = f"""
import gc, os, resource, torch
from mg_llava.model import load_trainable_state_dict
size, path = {size}, {str(tmp_path / "large.pth")!r}
big = torch.empty(size, dtype=torch.uint8)  # untouched pages: written out as zeros without filling memory
big[:8] = torch.arange(8, dtype=torch.uint8)
big[-1] = 255
torch.save(dict(meta=dict(iter=1), state_dict={{"llm.big": big}}), path)
del big
gc.collect()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
rss_before, peak_before = rss(), peak()
tensor = load_trainable_state_dict(path)["llm.big"]
ok = tensor.numel() == size and tensor[:8].tolist() == list(range(8)) and int(tensor[-1]) == 255
print(ok, rss() - rss_before, peak() - peak_before)
"""
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=600)
    ok, rss_growth, peak_growth = done.stdout.strip().splitlines()[-1].split()
    assert ok == "True"
    assert int(rss_growth) < size // 10, f"memory grew by {int(rss_growth) / 2 ** 20:.0f} MiB for a 2 GiB file"
    assert int(peak_growth) < size // 10, f"peak memory grew by {int(peak_growth) / 2 ** 20:.0f} MiB"


def test_resume_from_a_stock_mmengine_checkpoint(tmp_path):
    """``--resume`` (mmengine's CheckpointLoader) reads a checkpoint stock mmengine wrote, and training continues
    exactly as an uninterrupted run."""
    full = regression_runner(tmp_path / "full", max_iters=6)
    full.train()
    expected = copy.deepcopy(full.model.state_dict())

    checkpoint = write_stock_resume_checkpoint(str(tmp_path / "part"))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint, weights_only=True)
    resumed = regression_runner(tmp_path / "part", max_iters=6, resume=True, load_from=checkpoint)
    resumed.train()
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
    with open(osp.join(tmp_path, "part", "last_checkpoint")) as f:
        assert f.read().strip().endswith("iter_6.pth")
