"""`xtuner train` on the tiny CPU configs: both stages, two processes, and a killed-and-resumed run.

The runs train in a scratch working directory holding the tiny assets. The stage-1 run and the two-process run go
through the user's command (`xtuner train <config>`, with NPROC_PER_NODE=2 for two processes); the others start what
that command starts (`python xtuner/tools/train.py ...`, or `torchrun ... train.py ... --launcher pytorch`) without
its own process, which imports all of XTuner (seconds of CPU on two cores) only to find train.py. XTuner 0.2.0's CLI
returns 0 even when training fails, so the tests judge runs by their checkpoints and logs.
"""
import importlib.util
import json
import os
import os.path as osp
import signal
import subprocess
import time
from glob import glob

import pytest
import torch

from training_state import assert_same_state, deepspeed_state, mmengine_state

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRETRAIN = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_pretrain.py")
FINETUNE = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_finetune.py")
# 8 captions, global batch 4: 2 iterations an epoch. Stage 1 runs 3 epochs, saving every 3 iterations.
STAGE1_EPOCHS, STAGE1_ITERS, SAVE_STEPS = 3, 6, 3
# The recipes' optimizer as it is (AdamW, eps 1e-8) on the bundled captions, whose lengths differ (8 to 17 words): the
# processes of a two-process run hold different numbers of answer tokens, and Adam's second moment sets each step.
STAGE1_OPTIONS = [f"train_cfg.max_epochs={STAGE1_EPOCHS}", f"default_hooks.checkpoint.interval={SAVE_STEPS}"]
# Two processes (fp32) against one: the processes add the same products as one process, in another order (two batches
# of 2, each padded to its own longest, and an all-reduce, against one batch of 4; under ZeRO also sharded reductions).
# A float32 sum of n terms taken in another order moves by about sqrt(n) * 2^-24 of the terms' magnitude (rounding
# errors add as a random walk: within lambda * sqrt(n) * 2^-24 with probability 1 - 2 exp(-lambda^2 / 2), Higham and
# Mary 2019; n * 2^-24 is the worst case). The longest sums behind a gradient here have about n = 2^16 terms (4 samples
# x 528 positions x 32 channels); lambda = 4 (a chance of 7e-4 per sum to exceed): 2^2 * 2^8 * 2^-24 = 2^-14 of a
# tensor's scale. Hence:
# - exp_avg, a weighted mean of the gradients (weights summing to below 1): within 2^-14 of its tensor's largest value;
#   exp_avg_sq, a mean of their squares, doubles the relative error: 2^-13. The logged loss, one such sum: 2^-14.
# - the weights: each AdamW step moves an element by lr_t * m / (sqrt(v) + eps), a ratio of at most about 1, and the
#   moments' errors change that ratio by about 2^-14 for an element whose gradient is at its tensor's scale, by
#   scale / |gradient| times more for a smaller one (eps = 1e-8, far below these gradients, damps nothing). Allowing
#   elements down to 1/16 of their tensor's scale: 2^-14 * 16 = 2^-10 of the learning rates summed over the steps.
# Measured (`pytest -s` prints the gaps; DDP / ZeRO-2 / ZeRO-3, worst of iterations 3 and 6): exp_avg 1.8e-6 / 4.2e-6 /
# 2.4e-6, exp_avg_sq 1.5e-6 / 9.7e-6 / 4.0e-6, weights 5.1e-5 / 1.3e-5 / 7.2e-5 x sum(lr): 6 to 75 times inside the
# bounds. A per-process loss mean lands at 0.38, 0.56 and 1.6 x sum(lr): 10^3 to 10^4 times outside.
TWO_PROCESS_BOUNDS = {"weight": 2.0 ** -10, "exp_avg": 2.0 ** -14, "exp_avg_sq": 2.0 ** -13, "loss": 2.0 ** -14}
# The same process count resumed from a checkpoint repeats the same operations on the same bits: no tolerance.
RESUME_TOLERANCES = {"weight": 0.0, "exp_avg": 0.0, "exp_avg_sq": 0.0}
# For runs whose tests read no sample answers, and which repeat a run that makes them: without the config's
# SampleAnswersHook (its generation before and after training).
NO_SAMPLE_ANSWERS = "custom_hooks=[]"
TRAIN_PY = osp.join(importlib.util.find_spec("xtuner").submodule_search_locations[0], "tools", "train.py")
# The visual tokens' mean norm over the text embeddings' (both logged at every iteration: mg_llava/model/
# token_norms.py). Untrained, the tiny models start near 12 (visual ~1.3, text ~0.11). With the recipes' AdamW (eps
# 1e-8) the tiny image pair reached 53 after its 6 stage-1 iterations at lr 1e-2 and 154 in stage 2 (lr 3e-3); the
# tiny video stage 1 at lr 2e-3 reached 58 in its 20 iterations. A run whose visual tokens blow up passes 2000 (issue
# 26: the tiny video pair at lr 1e-2, 588 against 0.25 = 2352 after stage 1, 1.1e5 after stage 2).
MAX_NORM_RATIO = 300.0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    """A working directory laid out as tools/build_tiny_assets.py writes it (models shared with the session)."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    root = tmp_path_factory.mktemp("train_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    build_tiny_dataset(str(assets / "data"))
    return root


def xtuner_train(workspace, config, work_dir, *options, nproc=1, extra=(), background=False, cli=True):
    """Train ``config`` on ``nproc`` processes with one thread each; returns the log's path (in the background: the
    process, leader of its own process group). ``cli``: through the `xtuner` command; ``cli=False``: the command it
    starts (XTuner 0.2.0's entry_point.py: `python train.py ARGS`, or torchrun on 127.0.0.1 with ARGS + `--launcher
    pytorch`)."""
    from local_slurm import free_port

    env = dict(os.environ, NPROC_PER_NODE=str(nproc), OMP_NUM_THREADS="1")
    args = [config, "--work-dir", work_dir, *extra]
    args += ["--cfg-options", *options] if options else []
    if cli:
        cmd = ["xtuner", "train", *args]
    elif nproc == 1:
        cmd = ["python", TRAIN_PY, *args]
    else:
        cmd = ["torchrun", "--nnodes=1", "--node_rank=0", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", TRAIN_PY, *args, "--launcher", "pytorch"]
    log = open(osp.join(workspace, osp.basename(work_dir) + ".out"), "w")
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    if background:
        return proc
    proc.wait(timeout=600)
    return log.name


def scalars(work_dir):
    """Per-iteration training scalars logged by mmengine, keyed by iteration (latest run wins on resume)."""
    rows = {}
    for path in sorted(glob(osp.join(work_dir, "*", "vis_data", "scalars.json"))):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if "loss" in row:
                    rows[row["iter"]] = row
    return rows


def load_tool(name):
    """A script of tools/ as a module (its ``main(argv)`` runs it in this process)."""
    spec = importlib.util.spec_from_file_location(f"training_test_tool_{name}", osp.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def norm_ratios(work_dir):
    """{iteration: visual norm / text norm} of a run's log; every iteration must log both."""
    logged = scalars(work_dir)
    missing = [i for i, row in logged.items() if not {"visual_norm", "text_norm"} <= set(row)]
    assert logged and not missing, f"iterations {missing} log no visual_norm / text_norm"
    return {i: row["visual_norm"] / row["text_norm"] for i, row in logged.items()}


def _check(log_path, *paths):
    missing = [p for p in paths if not osp.exists(p)]
    if missing:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        pytest.fail(f"xtuner train produced no {missing}; end of its output:\n{tail}")


@pytest.fixture(scope="module")
def stage1(workspace):
    work_dir = str(workspace / "work_dirs" / "stage1")
    log = xtuner_train(workspace, PRETRAIN, work_dir, *STAGE1_OPTIONS)
    _check(log, osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth"))
    return work_dir


def test_stage1_trains_fusion_and_projectors_only(stage1):
    weights = load_weights(osp.join(stage1, f"iter_{STAGE1_ITERS}.pth"))
    prefixes = {key.split(".")[0] for key in weights}
    assert prefixes == {"fuse_module", "projector", "bbox_projector"}
    initial_gate_proj = load_weights(osp.join(stage1, f"iter_{SAVE_STEPS}.pth"))["fuse_module.slow_proj.weight"]
    assert not torch.equal(weights["fuse_module.slow_proj.weight"], initial_gate_proj), "the fusion did not train"
    losses = [row["loss"] for _, row in sorted(scalars(stage1).items())]
    assert len(losses) == STAGE1_ITERS and all(map(torch.isfinite, torch.tensor(losses)))


def test_stage2_loads_stage1_and_the_loss_falls(workspace, stage1):
    work_dir = str(workspace / "work_dirs" / "stage2")
    stage1_ckpt = osp.join(stage1, f"iter_{STAGE1_ITERS}.pth")
    # 33 samples, batch 4: 9 iterations an epoch.
    log = xtuner_train(workspace, FINETUNE, work_dir, f"model.pretrained_pth={stage1_ckpt}",
                       "train_cfg.max_epochs=2", "default_hooks.checkpoint.interval=100",
                       # the config's schedule spans 40 epochs: warm up in the first of these 2, anneal in the second
                       "param_scheduler.0.end=1", "param_scheduler.1.begin=1", "param_scheduler.1.end=2",
                       "optim_wrapper.optimizer.lr=0.003", cli=False)
    _check(log, osp.join(work_dir, "iter_18.pth"))
    with open(log) as f:
        text = f.read()
    assert f"trainable tensors from {stage1_ckpt}" in text
    # the config's SampleAnswersHook (every 10 iterations) and XTuner's dataset info, in the training log
    assert "Num train samples 33" in text
    for when in ("before training", "iteration 10", "after training"):
        assert f"Sample answer ({when}) [chelsea.jpg] USER: What is the main object in the image? ASSISTANT:" in text
    weights = load_weights(osp.join(work_dir, "iter_18.pth"))
    assert any(key.startswith("llm.") for key in weights), "stage 2 must train and save the LLM"
    assert not any(key.startswith(("visual_encoder.", "visual_encoder_aux.")) for key in weights)
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == 18
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.5, f"stage-2 loss did not fall: first iterations {losses[:4]}, last {losses[-4:]}"
    for run in (stage1, work_dir):  # the visual tokens stay on the text embeddings' scale, both stages
        ratios = norm_ratios(run)
        assert max(ratios.values()) < MAX_NORM_RATIO, {i: round(r, 1) for i, r in ratios.items()}


def two_process_run(workspace, name, *options):
    """Stage 1 on two processes with 2 samples each: one process's global batch of 4."""
    work_dir = str(workspace / "work_dirs" / name)
    log = xtuner_train(workspace, PRETRAIN, work_dir, *STAGE1_OPTIONS, "train_dataloader.batch_size=2", *options,
                       nproc=2)
    _check(log, osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth"))
    return work_dir


def run_state(work_dir, it):
    """The weights and AdamW moments of a run's checkpoint at iteration ``it`` (mmengine file or DeepSpeed folder)."""
    path = osp.join(work_dir, f"iter_{it}.pth")
    return deepspeed_state(path) if osp.isdir(path) else mmengine_state(path)


def assert_same_run(reference, other, bounds, what):
    """The checkpoints of ``other`` at both saved iterations hold ``reference``'s weights and AdamW moments within
    ``bounds`` (the weights' bound in units of the learning rates summed up to the checkpoint, as logged by
    ``reference``), and its logged losses agree within ``bounds["loss"]``. The gaps are printed (`pytest -s`)."""
    rows, others = scalars(reference), scalars(other)
    for it in (SAVE_STEPS, STAGE1_ITERS):
        summed_lr = sum(rows[i]["lr"] for i in range(1, it + 1))
        gaps = assert_same_state(run_state(reference, it), run_state(other, it),
                                 dict(bounds, weight=bounds["weight"] * summed_lr), f"{what}, iteration {it}")
        print(f"{what}, iteration {it}: weights {gaps['weight'][0] / summed_lr:.3g} x sum(lr), exp_avg "
              f"{gaps['exp_avg'][0]:.3g}, exp_avg_sq {gaps['exp_avg_sq'][0]:.3g}")
    for it in range(1, STAGE1_ITERS + 1):
        assert others[it]["loss"] == pytest.approx(rows[it]["loss"], rel=bounds["loss"]), f"{what}, iteration {it}"


def test_two_processes_match_one_with_the_same_global_batch(workspace, stage1):
    """NPROC_PER_NODE=2 with 2 samples each equals one process with 4: the same samples meet in each step, and the
    loss is one mean over all their answer tokens however the processes split them."""
    work_dir = two_process_run(workspace, "stage1_ddp")
    assert_same_run(stage1, work_dir, TWO_PROCESS_BOUNDS, "two processes vs one")


def test_two_process_check_fails_on_a_per_process_mean(workspace, stage1):
    """A test of the test above: XTuner's per-process loss mean, on processes holding different numbers of answer
    tokens, leaves the check far out of its bound."""
    work_dir = two_process_run(workspace, "stage1_ddp_per_process_mean", NO_SAMPLE_ANSWERS,
                               "model.type=mg_llava.testing.broken_variants.PerProcessMeanLoss")
    with pytest.raises(AssertionError) as failure:
        assert_same_run(stage1, work_dir, TWO_PROCESS_BOUNDS, "two processes (per-process mean) vs one")
    print(failure.value)


def test_killed_run_resumes_with_the_same_losses(workspace, stage1):
    work_dir = str(workspace / "work_dirs" / "stage1_killed")
    ckpt = osp.join(work_dir, f"iter_{SAVE_STEPS}.pth")
    proc = xtuner_train(workspace, PRETRAIN, work_dir, *STAGE1_OPTIONS, NO_SAMPLE_ANSWERS, background=True, cli=False)
    deadline = time.time() + 300
    while not osp.exists(osp.join(work_dir, "last_checkpoint")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group
    proc.wait()
    assert osp.exists(ckpt), "the run was to be killed after its first checkpoint"
    assert not osp.exists(osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth")), "the run finished before it was killed"

    log = xtuner_train(workspace, PRETRAIN, work_dir, *STAGE1_OPTIONS, NO_SAMPLE_ANSWERS, extra=["--resume", ckpt],
                       cli=False)
    _check(log, osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth"))
    reference, resumed = scalars(stage1), scalars(work_dir)
    for it in range(SAVE_STEPS + 1, STAGE1_ITERS + 1):
        assert resumed[it]["loss"] == reference[it]["loss"], f"iteration {it}"
    assert_same_state(mmengine_state(osp.join(stage1, f"iter_{STAGE1_ITERS}.pth")),
                      mmengine_state(osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth")), RESUME_TOLERANCES,
                      "resumed vs uninterrupted")


def test_resume_check_fails_without_exp_avg_sq(workspace, stage1):
    """A test of the test above: resumed with AdamW's second moments lost, the run leaves the check."""
    work_dir = str(workspace / "work_dirs" / "stage1_resumed_without_exp_avg_sq")
    log = xtuner_train(workspace, PRETRAIN, work_dir, *STAGE1_OPTIONS, NO_SAMPLE_ANSWERS,
                       "optim_wrapper.type=mg_llava.testing.broken_variants.ResumeWithoutExpAvgSq",
                       extra=["--resume", osp.join(stage1, f"iter_{SAVE_STEPS}.pth")], cli=False)
    _check(log, osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth"))
    with pytest.raises(AssertionError) as failure:
        assert_same_state(mmengine_state(osp.join(stage1, f"iter_{STAGE1_ITERS}.pth")),
                          mmengine_state(osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth")), RESUME_TOLERANCES,
                          "resumed without exp_avg_sq vs uninterrupted")
    print(failure.value)
