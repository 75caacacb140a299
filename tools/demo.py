"""The main job on the embedded tiny default (what ``make demo`` runs), on the CPU in a few minutes.

    python tools/demo.py [--retrain] [--images chelsea coffee] [--question "What is the main object in the image?"]

1. builds the tiny offline checkpoints and the bundled photo dataset (``tools/build_tiny_assets.py``);
2. trains stage 1 and then stage 2 with ``xtuner train`` on the tiny configs (skipped when their final checkpoints
   exist, unless ``--retrain``);
3. plots both loss curves to ``work_dirs/demo/loss_curves.png`` and checks that the stage-2 loss fell;
4. prints the sample answers the configs' ``SampleAnswersHook`` logged while each stage trained (before training,
   every 10 iterations, at the end);
5. asks the trained model the same question about two bundled photos through ``tools/chat.py`` (the answers differ
   with the image).

Run it from the repository root: the tiny configs read ``work_dirs/tiny_assets`` relative to the working directory.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
from glob import glob

from mg_llava.launch import interpreter_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {stage: f"xtuner_configs/tiny/mg_llava_tiny_cpu_{stage}.py" for stage in ("pretrain", "finetune")}
ASSETS = "work_dirs/tiny_assets"


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env=interpreter_env())  # `xtuner` of this interpreter's environment


def final_checkpoint(stage):
    """The checkpoint ``last_checkpoint`` names in the stage's work dir, or None before training finished."""
    pointer = osp.join(ROOT, "work_dirs", f"mg_llava_tiny_cpu_{stage}", "last_checkpoint")
    if not osp.exists(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    return path if osp.exists(path) else None


def train(stage, options):
    # XTuner 0.2.0's CLI returns 0 even when training fails: judge the run by its final checkpoint.
    run(["xtuner", "train", CONFIGS[stage], *(["--cfg-options", *options] if options else [])])
    ckpt = final_checkpoint(stage)
    if ckpt is None:
        sys.exit(f"demo: stage {stage} did not produce a checkpoint; see work_dirs/mg_llava_tiny_cpu_{stage}/")
    return ckpt


def losses(stage):
    logs = sorted(glob(osp.join(ROOT, "work_dirs", f"mg_llava_tiny_cpu_{stage}", "*", "vis_data", "scalars.json")))
    if not logs:
        return []
    with open(logs[-1]) as f:
        rows = [json.loads(line) for line in f]
    return [(row["iter"], row["loss"]) for row in rows if "loss" in row]


def sample_answers(stage):
    """The ``SampleAnswersHook`` lines of the stage's latest training log."""
    logs = sorted(glob(osp.join(ROOT, "work_dirs", f"mg_llava_tiny_cpu_{stage}", "*", "*.log")))
    if not logs:
        return []
    with open(logs[-1]) as f:
        return [line[line.index("Sample answer ("):].rstrip() for line in f if "Sample answer (" in line]


def plot_losses(curves, out_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5))
    for ax, (stage, points) in zip(axes, curves.items()):
        ax.plot([i for i, _ in points], [v for _, v in points], marker=".")
        ax.set(title=f"stage {'1 (pretrain)' if stage == 'pretrain' else '2 (instruction tuning)'}",
               xlabel="iteration", ylabel="loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(osp.dirname(out_path), exist_ok=True)
    fig.savefig(out_path, dpi=100)
    print(f"loss curves: {osp.relpath(out_path, ROOT)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train again even if both stages have finished")
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"],
                        help="bundled photos to ask about (names in work_dirs/tiny_assets/data/images)")
    parser.add_argument("--question", default="What is the main object in the image?")
    args = parser.parse_args(argv)

    run([sys.executable, "tools/build_tiny_assets.py", ASSETS])
    stage1 = final_checkpoint("pretrain")
    if args.retrain or stage1 is None:
        stage1 = train("pretrain", [])
    stage2 = final_checkpoint("finetune")
    if args.retrain or stage2 is None:
        stage2 = train("finetune", [f"model.pretrained_pth={stage1}"])

    curves = {stage: losses(stage) for stage in CONFIGS}
    plot_losses(curves, osp.join(ROOT, "work_dirs", "demo", "loss_curves.png"))
    points = curves["finetune"]
    window = max(1, len(points) // 5)
    first = sum(v for _, v in points[:window]) / window
    last = sum(v for _, v in points[-window:]) / window
    print(f"stage-2 loss: {first:.3f} (first {window} iterations) -> {last:.3f} (last {window})")
    if not last < first:
        sys.exit("demo: the stage-2 loss did not fall")

    for stage in CONFIGS:
        lines = sample_answers(stage)
        print(f"sample answers during {stage} training ({len(lines)}):")
        for line in lines:
            print("  " + line)

    for image in args.images:
        run([sys.executable, "tools/chat.py", "--config", CONFIGS["finetune"], "--checkpoint", stage2,
             "--image", f"{ASSETS}/data/images/{image}.jpg", "--boxes", f"{ASSETS}/data/boxes.json",
             "--box-id", image, "--prompt", args.question])


if __name__ == "__main__":
    main()
