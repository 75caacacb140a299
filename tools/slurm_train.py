"""Launch XTuner training on a slurm cluster, OpenMMLab style: one task per process, ``--launcher slurm``.

    # GPU partition: one task per GPU; 16 GPUs = 2 nodes x 8
    python tools/slurm_train.py PARTITION JOB_NAME CONFIG --gpus 16 [--gpus-per-node 8] [--cpus-per-task 8]
    # CPU-only partition: no GPUs asked for; 4 processes = 2 nodes x 2
    python tools/slurm_train.py PARTITION JOB_NAME CONFIG --gpus 0 --tasks 4 --tasks-per-node 2 --cpus-per-task 1
    # common: [--port 29501] [--srun-args "--quotatype=auto"] [--dry-run] [-- extra xtuner train args]

Each task runs XTuner's training script (what ``xtuner train`` runs) with this interpreter, so the tasks need no PATH
or venv activation and a failing task's exit status reaches srun (``--kill-on-bad-exit`` then stops the others;
XTuner's CLI would return 0). mmengine's slurm launcher takes rank, world size, local rank and the master node from
slurm's variables; ``--port`` sets ``MASTER_PORT`` (default: the environment's, else 29500). Each task gets
``OMP_NUM_THREADS`` = ``--cpus-per-task`` unless the environment sets it. ``--dry-run`` prints the command and exits.
"""
import argparse
import importlib.util
import os
import shlex
import subprocess
import sys


def layout(args):
    """(tasks, nodes, tasks per node) of the job; raises ValueError for a layout slurm cannot fill evenly."""
    if args.gpus < 0:
        raise ValueError(f"--gpus {args.gpus} must be >= 0")
    if args.gpus > 0:
        if args.tasks is not None or args.tasks_per_node is not None:
            raise ValueError("with GPUs there is one task per GPU: give --gpus/--gpus-per-node, not --tasks")
        total, per_node, unit = args.gpus, args.gpus_per_node, "gpus"
    else:
        if args.tasks is None:
            raise ValueError("--gpus 0 (a CPU-only partition) needs --tasks N (and --tasks-per-node M for many nodes)")
        total, per_node, unit = args.tasks, args.tasks_per_node or args.tasks, "tasks"
    if total < 1 or per_node < 1:
        raise ValueError(f"--{unit} {total} and --{unit}-per-node {per_node} must be positive")
    per_node = min(total, per_node)
    if total % per_node:
        raise ValueError(f"--{unit} {total} is not a multiple of --{unit}-per-node {per_node}")
    return total, total // per_node, per_node


def build_command(args) -> list:
    tasks, nodes, per_node = layout(args)
    exports = {"MASTER_PORT": args.port} if args.port is not None else {}
    if "OMP_NUM_THREADS" not in os.environ:
        exports["OMP_NUM_THREADS"] = args.cpus_per_task
    cmd = [
        "srun",
        "-p", args.partition,
        f"--job-name={args.job_name}",
        *([f"--gres=gpu:{per_node}"] if args.gpus else []),
        f"--nodes={nodes}",
        f"--ntasks={tasks}",
        f"--ntasks-per-node={per_node}",
        f"--cpus-per-task={args.cpus_per_task}",
        "--export=" + ",".join(["ALL", *(f"{key}={value}" for key, value in exports.items())]),
        "--kill-on-bad-exit=1",
        *shlex.split(args.srun_args),
        sys.executable, "-m", "xtuner.tools.train", args.config, "--launcher", "slurm",
        *args.xtuner_args,
    ]
    return cmd


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("partition")
    parser.add_argument("job_name")
    parser.add_argument("config")
    parser.add_argument("--gpus", type=int, default=8, help="total GPUs (= slurm tasks); 0 for a CPU-only partition")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--tasks", type=int, help="with --gpus 0: total processes")
    parser.add_argument("--tasks-per-node", type=int, help="with --gpus 0: processes per node (default: all on one)")
    parser.add_argument("--cpus-per-task", type=int, default=8)
    parser.add_argument("--port", type=int, help="MASTER_PORT of the job (default: the environment's, else 29500)")
    parser.add_argument("--srun-args", default="", help="extra srun arguments, one quoted string")
    parser.add_argument("--dry-run", action="store_true", help="print the srun command and exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.xtuner_args = argv[split + 1:]  # everything after -- goes to xtuner train unchanged
    if not os.path.isfile(args.config):
        parser.error(f"config file not found: {args.config}")
    if importlib.util.find_spec("xtuner") is None:
        parser.error(f"xtuner is not installed for {sys.executable}; run this tool with the training environment's "
                     "python")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cmd = build_command(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
