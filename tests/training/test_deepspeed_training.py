"""The GPU recipes' training path on CPU: `xtuner train` with FlexibleRunner + XTuner's DeepSpeedStrategy, ZeRO-2 and
ZeRO-3, bf16, two processes, both stages; resume; DeepSpeed checkpoint -> export -> chat.

The runs share test_tiny_training.py's workspace, stage-1 options and launcher: the first ZeRO-2 run goes through
`xtuner train` (NPROC_PER_NODE=2), the others start what that command starts. Every launch costs seconds of imports on
two cores, so one bf16 ZeRO-2 chain (stage 1 -> stage 2) serves the resume, export and chat tests, and one ZeRO-3
chain is checked against it.
"""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest
import torch

from test_tiny_training import (  # noqa: F401  (workspace is a fixture)
    ROOT,
    SAVE_STEPS,
    STAGE1_ITERS,
    STAGE1_OPTIONS,
    NO_SAMPLE_ANSWERS,
    RESUME_TOLERANCES,
    TWO_PROCESS_BOUNDS,
    _check,
    assert_same_run,
    load_tool,
    scalars,
    workspace,
    xtuner_train,
)
from training_state import assert_same_state, deepspeed_state
from mg_llava.model.checkpoint import DEEPSPEED_MODEL_FILE, ZERO3_WEIGHTS_FILE, load_trainable_state_dict

TINY = osp.join(ROOT, "xtuner_configs", "tiny")
CONFIGS = {(zero, stage): osp.join(TINY, f"mg_llava_tiny_cpu_zero{zero}_{stage}.py")
           for zero in (2, 3) for stage in ("pretrain", "finetune")}
TWO_PROCESSES = ["train_dataloader.batch_size=2", "strategy.train_micro_batch_size_per_gpu=2"]  # global batch 4
# 33 samples in length groups, 2 per process: 10 iterations an epoch; the config's 40-epoch schedule squeezed into the
# 2 epochs run here.
STAGE2_OPTIONS = ["train_cfg.max_epochs=2", "default_hooks.checkpoint.interval=100", "param_scheduler.0.end=1",
                  "param_scheduler.1.begin=1", "param_scheduler.1.end=2", "optim_wrapper.optimizer.lr=0.003"]
STAGE2_ITERS = 20
FP32 = ["strategy.config.bf16.enabled=False", "model.llm.torch_dtype=float32"]
VISION_SIDE = {"fuse_module", "projector", "bbox_projector"}


def run(workspace, zero, stage, name, *options, nproc=2, cli=False, **kwargs):
    """A tiny DeepSpeed config trained as `xtuner train` trains it (through the command itself with ``cli``);
    returns (work_dir, log path or, in the background, the process)."""
    work_dir = str(workspace / "work_dirs" / name)
    base = STAGE1_OPTIONS if stage == "pretrain" else STAGE2_OPTIONS
    per_process = TWO_PROCESSES if nproc == 2 else []
    log = xtuner_train(workspace, CONFIGS[zero, stage], work_dir, *base, *per_process, *options, nproc=nproc,
                       cli=cli, **kwargs)
    return work_dir, log


def checkpoint(work_dir, it):
    return osp.join(work_dir, f"iter_{it}.pth")


def losses(work_dir):
    return [row["loss"] for _, row in sorted(scalars(work_dir).items())]


def weights(work_dir, it):
    return load_trainable_state_dict(checkpoint(work_dir, it))


def read(log):
    with open(log) as f:
        return f.read()


@pytest.fixture(scope="module")
def zero2_stage1(workspace):
    work_dir, log = run(workspace, 2, "pretrain", "zero2_stage1", cli=True)
    _check(log, osp.join(checkpoint(work_dir, STAGE1_ITERS), DEEPSPEED_MODEL_FILE))
    return work_dir


@pytest.fixture(scope="module")
def zero2_stage2(workspace, zero2_stage1):
    work_dir, log = run(workspace, 2, "finetune", "zero2_stage2",
                        f"model.pretrained_pth={checkpoint(zero2_stage1, STAGE1_ITERS)}")
    _check(log, osp.join(checkpoint(work_dir, STAGE2_ITERS), DEEPSPEED_MODEL_FILE))
    return work_dir, log


@pytest.fixture(scope="module")
def zero3_stage1(workspace):
    work_dir, log = run(workspace, 3, "pretrain", "zero3_stage1")
    _check(log, osp.join(checkpoint(work_dir, STAGE1_ITERS), ZERO3_WEIGHTS_FILE))
    return work_dir


def test_zero2_bf16_stage1_two_processes(zero2_stage1):
    final, first = weights(zero2_stage1, STAGE1_ITERS), weights(zero2_stage1, SAVE_STEPS)
    assert {key.split(".")[0] for key in final} == VISION_SIDE
    assert {value.dtype for value in final.values()} == {torch.bfloat16}
    assert not torch.equal(final["fuse_module.slow_proj.weight"], first["fuse_module.slow_proj.weight"])
    # both processes wrote their ZeRO-2 optimizer shard
    for rank in (0, 1):
        assert osp.isfile(osp.join(checkpoint(zero2_stage1, STAGE1_ITERS), f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"))
    values = losses(zero2_stage1)
    assert len(values) == STAGE1_ITERS and all(map(torch.isfinite, torch.tensor(values)))


def test_zero2_bf16_stage2_loads_stage1_and_the_loss_falls(zero2_stage1, zero2_stage2):
    work_dir, log = zero2_stage2
    assert f"trainable tensors from {checkpoint(zero2_stage1, STAGE1_ITERS)}" in read(log)
    final = weights(work_dir, STAGE2_ITERS)
    assert {key.split(".")[0] for key in final} == VISION_SIDE | {"llm"}
    values = losses(work_dir)
    assert len(values) == STAGE2_ITERS
    first, last = sum(values[:4]) / 4, sum(values[-4:]) / 4
    assert last < first - 0.5, f"stage-2 loss did not fall in bf16: first iterations {values[:4]}, last {values[-4:]}"


@pytest.mark.parametrize("zero", [2, 3])
def test_killed_run_resumes_with_the_same_losses(workspace, zero, request):
    """Killed after its first checkpoint and resumed from it, a two-process run continues as the uninterrupted one
    (ZeRO-2: optimizer shards per rank; ZeRO-3: every parameter and its optimizer state partitioned)."""
    reference_dir = request.getfixturevalue(f"zero{zero}_stage1")
    model_file = DEEPSPEED_MODEL_FILE if zero == 2 else ZERO3_WEIGHTS_FILE
    work_dir = str(workspace / "work_dirs" / f"zero{zero}_killed")
    resume_from = checkpoint(work_dir, SAVE_STEPS)
    # ZeRO-3 keeps the config's hooks: they include the one that writes the gathered weights
    hooks = [NO_SAMPLE_ANSWERS] if zero == 2 else []
    _, proc = run(workspace, zero, "pretrain", f"zero{zero}_killed", *hooks, background=True)
    deadline = time.time() + 300
    while not osp.exists(osp.join(work_dir, "last_checkpoint")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: torchrun and both ranks
    proc.wait()
    assert osp.isdir(resume_from), "the run was to be killed after its first checkpoint"
    assert not osp.exists(checkpoint(work_dir, STAGE1_ITERS)), "the run finished before it was killed"

    _, log = run(workspace, zero, "pretrain", f"zero{zero}_killed", *hooks, extra=["--resume", resume_from])
    _check(log, osp.join(checkpoint(work_dir, STAGE1_ITERS), model_file))
    # the same processes repeat the same operations on the same bits: no tolerance (RESUME_TOLERANCES)
    reference, resumed = scalars(reference_dir), scalars(work_dir)
    for it in range(SAVE_STEPS + 1, STAGE1_ITERS + 1):
        assert resumed[it]["loss"] == reference[it]["loss"], f"iteration {it}"
    final_ref, final = weights(reference_dir, STAGE1_ITERS), weights(work_dir, STAGE1_ITERS)
    assert final_ref.keys() == final.keys()
    for key in final_ref:
        torch.testing.assert_close(final[key], final_ref[key], rtol=0, atol=0, msg=key)
    # the fp32 master weights and both AdamW moments of every shard
    assert_same_state(deepspeed_state(checkpoint(reference_dir, STAGE1_ITERS)),
                      deepspeed_state(checkpoint(work_dir, STAGE1_ITERS)), RESUME_TOLERANCES,
                      f"ZeRO-{zero} resumed vs uninterrupted")


@pytest.fixture(scope="module")
def one_process_fp32(workspace):
    """The fp32 reference of the two-process runs: ZeRO-2 on one process without a launcher (what plain `xtuner
    train` runs). One process has nothing to partition, so it stands for ZeRO-3 as well (which does not start on one
    process without a launcher: DeepSpeed's zero.Init then looks for MPI)."""
    work_dir, log = run(workspace, 2, "pretrain", "zero2_fp32_1p", *FP32, NO_SAMPLE_ANSWERS, nproc=1)
    _check(log, osp.join(checkpoint(work_dir, STAGE1_ITERS), DEEPSPEED_MODEL_FILE))
    return work_dir


@pytest.mark.parametrize("zero", [2, 3])
def test_two_processes_match_one_in_fp32(workspace, one_process_fp32, zero):
    """ZeRO-2 / ZeRO-3 with 2 processes x 2 samples of different lengths trains as one process with 4 samples: the
    weights and both AdamW moments, put back together from every process's shard, within the bounds derived in
    test_tiny_training.py (after 3 and 6 steps), and the same logged losses."""
    hooks = [NO_SAMPLE_ANSWERS] if zero == 2 else []  # ZeRO-3's hook writes the gathered weights
    work_dir, log = run(workspace, zero, "pretrain", f"zero{zero}_fp32_2p", *FP32, *hooks)
    _check(log, checkpoint(work_dir, STAGE1_ITERS))
    assert {value.dtype for value in weights(work_dir, STAGE1_ITERS).values()} == {torch.float32}
    assert_same_run(one_process_fp32, work_dir, TWO_PROCESS_BOUNDS, f"ZeRO-{zero}, two processes vs one")


def test_deepspeed_checkpoint_exports_and_chats(workspace, zero2_stage2, capsys, monkeypatch):
    """tools/export.py and `xtuner convert pth_to_hf` turn the DeepSpeed checkpoint folder into the same exported
    folder; tools/chat.py answers from it. (The tools run in this process; XTuner's command in its own.)"""
    from safetensors.torch import load_file

    work_dir, _ = zero2_stage2
    folder = checkpoint(work_dir, STAGE2_ITERS)
    config = CONFIGS[2, "finetune"]
    exported, converted = str(workspace / "exported"), str(workspace / "converted")
    monkeypatch.chdir(workspace)  # the config's asset paths are relative to it
    load_tool("export").main(["--config", config, "--checkpoint", folder, "--out-dir", exported])
    assert osp.isdir(exported)
    done = subprocess.run(["xtuner", "convert", "pth_to_hf", config, folder, converted, "--fp32"], cwd=workspace,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and osp.isdir(converted), done.stdout[-3000:] + done.stderr[-3000:]
    trained = weights(work_dir, STAGE2_ITERS)  # the bf16 weights of the model-states file
    # tools/export.py writes those; XTuner's pth_to_hf gathers the fp32 master weights from the ZeRO shards, which
    # round to them: bf16 keeps 8 significant bits, so each value is within 2^-8 of the tensor's scale (values far
    # below the scale, e.g. in the zero-initialised projections, may differ more in relative terms)
    for out, tolerance in ((exported, 0.0), (converted, 2.0 ** -8)):
        modules = load_file(osp.join(out, "mg_llava_modules.safetensors"))
        assert modules.keys() == {key for key in trained if not key.startswith("llm.")}
        for key, value in modules.items():
            reference = trained[key].float()
            scale = reference.abs().max().item()
            torch.testing.assert_close(value.float(), reference, rtol=tolerance, atol=tolerance * scale + 1e-12,
                                       msg=key)

    image = str(workspace / "work_dirs" / "tiny_assets" / "data" / "images" / "chelsea.jpg")
    capsys.readouterr()
    load_tool("chat").main(["--checkpoint", exported, "--device", "cpu", "--image", image, "--no-boxes", "--prompt",
                            "What is the main object in the image?", "--max-new-tokens", "8"])
    out = capsys.readouterr().out
    answer = out.split("ASSISTANT: ", 1)[-1].strip()
    assert answer, f"no answer: {out[-1000:]}"


def test_zero3_stage1_in_bf16_keeps_the_released_keys(zero3_stage1, zero2_stage1):
    """ZeRO-3 partitions every parameter, the frozen encoders included; in bf16 it trains, and the gathered trainable
    weights keep exactly ZeRO-2's (the released) key names.

    That ZeRO-3 computes what ZeRO-2 computes is test_two_processes_match_one_in_fp32[3]'s check (weights and AdamW
    moments against the one-process run, within derived bounds). Their bf16 losses are not compared here: after an
    update each run rounds its own fp32 master weights to bf16, and the only bound that follows is the worst case of
    one bf16 step (2^-8) in every weight, which no partitioning error needs to exceed (measured: 1.3e-5 apart)."""
    values = losses(zero3_stage1)
    assert len(values) == STAGE1_ITERS and all(map(torch.isfinite, torch.tensor(values))), values
    final = weights(zero3_stage1, STAGE1_ITERS)
    assert final.keys() == weights(zero2_stage1, STAGE1_ITERS).keys()
    assert {value.dtype for value in final.values()} == {torch.bfloat16}
    assert not torch.equal(final["fuse_module.slow_proj.weight"],
                           weights(zero3_stage1, SAVE_STEPS)["fuse_module.slow_proj.weight"])


def test_zero3_stage2_loads_stage1_through_pretrained_pth(workspace, zero3_stage1):
    work_dir, log = run(workspace, 3, "finetune", "zero3_stage2",
                        f"model.pretrained_pth={checkpoint(zero3_stage1, STAGE1_ITERS)}")
    _check(log, osp.join(checkpoint(work_dir, STAGE2_ITERS), ZERO3_WEIGHTS_FILE))
    assert f"trainable tensors from {checkpoint(zero3_stage1, STAGE1_ITERS)}" in read(log)
    final = weights(work_dir, STAGE2_ITERS)
    assert {key.split(".")[0] for key in final} == VISION_SIDE | {"llm"}
    values = losses(work_dir)
    assert values[-1] < values[0], f"stage-2 loss did not fall under ZeRO-3: {values}"
