"""tools/slurm_train.py: the srun command it builds (dry runs), and a real 2-task training job on a local cluster."""
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
from glob import glob
from pathlib import Path

import pytest
import torch

from local_slurm import LocalSlurmCluster, free_port, missing_requirements

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "slurm_train.py"
PRETRAIN = ROOT / "xtuner_configs" / "tiny" / "mg_llava_tiny_cpu_pretrain.py"
TRAIN = [sys.executable, "-m", "xtuner.tools.train"]


def _run(*args, env=None):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env)


def _dry_run(*args, env=None):
    out = _run("--dry-run", *args, env=env)
    assert out.returncode == 0, out.stderr
    return shlex.split(out.stdout.strip())


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text("x = 1\n")
    return str(path)


def test_gpu_job_over_two_nodes(config):
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    cmd = _dry_run("gpu", "mgllava_s1", config, "--gpus", "16", "--port", "29501", "--srun-args=--quotatype=auto",
                   env=env)
    assert cmd == [
        "srun", "-p", "gpu", "--job-name=mgllava_s1", "--gres=gpu:8", "--nodes=2", "--ntasks=16",
        "--ntasks-per-node=8", "--cpus-per-task=8", "--export=ALL,MASTER_PORT=29501,OMP_NUM_THREADS=8",
        "--kill-on-bad-exit=1", "--quotatype=auto", *TRAIN, config, "--launcher", "slurm",
    ]


def test_cpu_job_asks_for_no_gpus_and_lays_out_nodes(config):
    cmd = _dry_run("cpu", "j", config, "--gpus", "0", "--tasks", "4", "--tasks-per-node", "2", "--cpus-per-task",
                   "1", env=dict(os.environ, OMP_NUM_THREADS="3"))
    assert not any(arg.startswith("--gres") for arg in cmd)
    assert ["--nodes=2", "--ntasks=4", "--ntasks-per-node=2", "--cpus-per-task=1"] == cmd[4:8]
    assert "--export=ALL" in cmd  # the environment's OMP_NUM_THREADS=3 reaches the tasks unchanged
    single_node = _dry_run("cpu", "j", config, "--gpus", "0", "--tasks", "2")
    assert ["--nodes=1", "--ntasks=2", "--ntasks-per-node=2"] == single_node[4:7]


def test_extra_args_reach_xtuner_and_small_jobs_use_one_node(config):
    cmd = _dry_run("p", "j", config, "--gpus", "4", "--", "--deepspeed", "deepspeed_zero2", "--seed", "3")
    assert "--gres=gpu:4" in cmd and "--nodes=1" in cmd and "--ntasks-per-node=4" in cmd
    assert cmd[-4:] == ["--deepspeed", "deepspeed_zero2", "--seed", "3"]


@pytest.mark.parametrize("args, message", [
    (["--gpus", "12"], "not a multiple"),
    (["--gpus", "0"], "needs --tasks"),
    (["--gpus", "0", "--tasks", "3", "--tasks-per-node", "2"], "not a multiple"),
    (["--gpus", "8", "--tasks", "2"], "one task per GPU"),
    (["--gpus", "-1"], "must be >= 0"),
])
def test_layouts_slurm_cannot_fill_fail(config, args, message):
    out = _run("p", "j", config, *args, "--dry-run")
    assert out.returncode != 0 and message in out.stderr


def test_missing_config_fails(tmp_path):
    out = _run("p", "j", str(tmp_path / "nope.py"), "--dry-run")
    assert out.returncode != 0 and "config file not found" in out.stderr


# ---------------------------------------------------------------------------------------------------------------
# A real cluster: slurmctld + slurmd + munged in a temporary directory, one CPU-only partition.


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with LocalSlurmCluster(tmp_path_factory.mktemp("slurm"), partition="cpu") as cluster:
        yield cluster


def test_two_slurm_tasks_train_together_on_a_cpu_partition(slurm_cluster, tiny_models, tmp_path):
    """srun starts 2 tasks with --launcher slurm; they form one gloo group of 2 and share the epoch's samples."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    assert slurm_cluster.cpus >= 2, "the partition needs 2 CPUs for 2 tasks"
    assets = tmp_path / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    with open(build_tiny_dataset(str(assets / "data"))["pretrain"]) as f:
        num_samples = len(json.load(f))
    work_dir = tmp_path / "work_dirs" / "slurm"
    per_task_batch = 2
    iters = num_samples // (2 * per_task_batch)  # one epoch split over 2 tasks; one task alone would need twice that
    # The tasks get no help from PATH: the launcher runs them with its own interpreter.
    env = dict(slurm_cluster.env, PATH="/usr/bin:/bin:/usr/sbin:/sbin")
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, str(TOOL), slurm_cluster.partition, "mgllava_tiny", str(PRETRAIN), "--gpus", "0",
           "--tasks", "2", "--cpus-per-task", "1", "--port", str(free_port()), "--",
           "--work-dir", str(work_dir), "--cfg-options", "train_cfg.max_epochs=1",
           f"train_dataloader.batch_size={per_task_batch}", f"default_hooks.checkpoint.interval={iters}",
           "custom_hooks=[]"]  # no sample answers (the tiny training tests read them)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"srun failed ({out.returncode}):\n{log[-4000:]}\n{slurm_cluster.logs()}"
    checkpoint = work_dir / f"iter_{iters}.pth"
    assert checkpoint.exists(), f"no {checkpoint.name}; end of the job's output:\n{log[-4000:]}"

    assert "Distributed launcher: slurm" in log and "GPU number: 2" in log  # mmengine's world size line
    assert "--cpus-per-task=1" in log and "--ntasks=2" in log  # the command the tool printed
    rows = [json.loads(line) for path in glob(str(work_dir / "*" / "vis_data" / "scalars.json"))
            for line in open(path)]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == iters and all(map(torch.isfinite, torch.tensor(losses))), losses
    weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert {key.split(".")[0] for key in weights} == {"fuse_module", "projector", "bbox_projector"}
