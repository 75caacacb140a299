"""The compatibility patches applied by ``import mg_llava`` (mg_llava/compat.py), each against what it fixes."""
import os
import pickle
import socket

import pytest
import torch

import mg_llava  # noqa: F401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def test_xtuner_llm_dispatch_works_without_cuda(tiny_models):
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM
    from xtuner.model.llava import LLaVAModel

    cfg = ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=tiny_models["llm_vicuna"])
    # This is the call that crashed with "module 'torch.cpu' has no attribute 'is_bf16_supported'".
    out = LLaVAModel._dispatch_lm_model_cfg(LLaVAModel, cfg)
    assert out.pretrained_model_name_or_path == tiny_models["llm_vicuna"]


def test_xtuner_llava_model_builds_on_cpu(tiny_models):
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM, CLIPVisionModel
    from xtuner.model import LLaVAModel

    model = LLaVAModel(
        llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=tiny_models["llm_vicuna"]),
        visual_encoder=ConfigDict(type=CLIPVisionModel.from_pretrained, pretrained_model_name_or_path=tiny_models["clip"]),
        freeze_llm=True,
        freeze_visual_encoder=True,
    )
    assert model.projector.model[0].in_features == 32


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    """A checkpoint shaped like mmengine's (MessageHub with HistoryBuffer, numpy values) loads under weights_only."""
    import numpy as np
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("mg_llava_compat_test")
    for i in range(3):
        hub.update_scalar("train/loss", np.float64(1.0 / (i + 1)))
    hub.update_info("iter", 3)
    path = tmp_path / "iter_3.pth"
    torch.save({"meta": {"message_hub": hub.state_dict(), "seed": np.int64(7)}, "state_dict": {"w": torch.ones(2)},
                "extra": np.arange(3, dtype=np.float32)}, path)

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    restored = MessageHub.get_instance("mg_llava_compat_test_restored")
    restored.load_state_dict(ckpt["meta"]["message_hub"])
    assert restored.get_scalar("train/loss").data[0].tolist() == pytest.approx([1.0, 0.5, 1.0 / 3])
    assert int(ckpt["meta"]["seed"]) == 7


def test_unlisted_globals_still_refused(tmp_path):
    """The allow-list is exact: arbitrary objects are still rejected by the safe loader."""
    path = tmp_path / "evil.pth"
    torch.save({"obj": pickle.PicklingError("x")}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_mmengine_torchrun_init_works_without_cuda(monkeypatch):
    """mmengine's init_dist('pytorch') no longer calls torch.cuda.set_device on a CPU-only machine."""
    import torch.distributed as dist
    from mmengine.dist import init_dist

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path: runs on a machine without CUDA")
    port = free_port()
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    init_dist("pytorch", backend="nccl")  # the configs' GPU default; on CPU it must fall back to gloo
    try:
        assert dist.get_backend() == "gloo" and dist.get_world_size() == 1
    finally:
        dist.destroy_process_group()


def test_mmengine_deepspeed_init_works_without_cuda(monkeypatch):
    """mmengine's DeepSpeed strategy start-up (init_backend='deepspeed') on CPU: gloo, and DeepSpeed's process group
    does not JIT-compile its shared-memory inference op."""
    import deepspeed.comm.comm as ds_comm
    import torch.distributed as dist
    from mmengine.dist import init_dist

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path: runs on a machine without CUDA")
    port = free_port()
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(ds_comm, "cdb", None)
    init_dist("pytorch", backend="nccl", init_backend="deepspeed")
    try:
        assert dist.get_backend() == "gloo" and dist.get_world_size() == 1
        assert ds_comm.cdb is not None and ds_comm.cdb.shm_comm_op is None
    finally:
        dist.destroy_process_group()


def test_mmengine_slurm_init_works_without_cuda(monkeypatch):
    """mmengine's init_dist('slurm') sets rank/world size from slurm's variables and uses gloo on a CPU-only machine."""
    import torch.distributed as dist
    from mmengine.dist import init_dist

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path: runs on a machine without CUDA")
    port = free_port()
    # What srun gives one task of a 1-task job; MASTER_ADDR spares the test scontrol (the slurm test covers it).
    for key, value in dict(SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_LOCALID="0", SLURM_NODELIST="localhost",
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # set by the launcher; monkeypatch removes them afterwards
        monkeypatch.setenv(key, "unset")
    init_dist("slurm", backend="nccl")  # the configs' GPU default
    try:
        assert dist.get_backend() == "gloo" and dist.get_world_size() == 1 and dist.get_rank() == 0
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("0", "1", "0")
    finally:
        dist.destroy_process_group()


def test_bitsandbytes_and_peft_lora_import():
    """bitsandbytes 0.45.0 (pinned by XTuner) imports next to a triton without triton.ops, so peft's LoRA works."""
    import bitsandbytes
    import peft
    import torch.nn as nn

    assert bitsandbytes.__version__
    model = peft.get_peft_model(nn.Sequential(nn.Linear(4, 4)), peft.LoraConfig(r=2, target_modules=["0"]))
    assert any("lora_A" in name for name, _ in model.named_parameters())
