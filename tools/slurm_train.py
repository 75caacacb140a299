"""Launch ``xtuner train`` on a slurm cluster, OpenMMLab style.

    python tools/slurm_train.py PARTITION JOB_NAME CONFIG [--gpus 16] [--gpus-per-node 8] [--cpus-per-task 8]
        [--srun-args "--quotatype=auto"] [--dry-run] [-- extra xtuner train args, e.g. --deepspeed deepspeed_zero2]

Every task runs one ``xtuner train`` process with ``--launcher slurm``; mmengine reads the rank and world size from
slurm's variables. ``--dry-run`` prints the exact command and exits.
"""
import argparse
import os
import shlex
import subprocess
import sys


def build_command(args) -> list:
    if args.gpus % args.gpus_per_node and args.gpus > args.gpus_per_node:
        raise ValueError(f"--gpus {args.gpus} is not a multiple of --gpus-per-node {args.gpus_per_node}")
    per_node = min(args.gpus, args.gpus_per_node)
    cmd = [
        "srun",
        "-p", args.partition,
        f"--job-name={args.job_name}",
        f"--gres=gpu:{per_node}",
        f"--ntasks={args.gpus}",
        f"--ntasks-per-node={per_node}",
        f"--cpus-per-task={args.cpus_per_task}",
        "--kill-on-bad-exit=1",
        *shlex.split(args.srun_args),
        "xtuner", "train", args.config, "--launcher", "slurm",
        *args.xtuner_args,
    ]
    return cmd


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("partition")
    parser.add_argument("job_name")
    parser.add_argument("config")
    parser.add_argument("--gpus", type=int, default=8, help="total GPUs (= slurm tasks)")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--cpus-per-task", type=int, default=8)
    parser.add_argument("--srun-args", default="", help="extra srun arguments, one quoted string")
    parser.add_argument("--dry-run", action="store_true", help="print the srun command and exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.xtuner_args = argv[split + 1:]  # everything after -- goes to xtuner train unchanged
    if not os.path.isfile(args.config):
        parser.error(f"config file not found: {args.config}")
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
