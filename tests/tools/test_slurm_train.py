import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "slurm_train.py"


def _dry_run(*args):
    out = subprocess.run([sys.executable, str(TOOL), "--dry-run", *args], capture_output=True, text=True, check=True)
    return shlex.split(out.stdout.strip())


def test_dry_run_prints_the_exact_srun_command(tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text("x = 1\n")
    cmd = _dry_run("gpu", "mgllava_s1", str(config), "--gpus", "16", "--srun-args=--quotatype=auto")
    assert cmd == [
        "srun", "-p", "gpu", "--job-name=mgllava_s1", "--gres=gpu:8", "--ntasks=16", "--ntasks-per-node=8",
        "--cpus-per-task=8", "--kill-on-bad-exit=1", "--quotatype=auto",
        "xtuner", "train", str(config), "--launcher", "slurm",
    ]


def test_extra_args_reach_xtuner_and_small_jobs_use_one_node(tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text("x = 1\n")
    cmd = _dry_run("p", "j", str(config), "--gpus", "4", "--", "--deepspeed", "deepspeed_zero2", "--seed", "3")
    assert "--gres=gpu:4" in cmd and "--ntasks-per-node=4" in cmd
    assert cmd[-4:] == ["--deepspeed", "deepspeed_zero2", "--seed", "3"]


def test_missing_config_and_uneven_gpu_count_fail(tmp_path):
    missing = subprocess.run([sys.executable, str(TOOL), "p", "j", str(tmp_path / "nope.py"), "--dry-run"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "config file not found" in missing.stderr
    config = tmp_path / "cfg.py"
    config.write_text("x = 1\n")
    with pytest.raises(subprocess.CalledProcessError) as err:
        subprocess.run([sys.executable, str(TOOL), "p", "j", str(config), "--gpus", "12", "--dry-run"],
                       capture_output=True, text=True, check=True)
    assert "not a multiple" in err.value.stderr
