"""Steps and time of one training run over the checked data, per GPU count.

Steps come from the config: ``batch_size`` samples per GPU and iteration, ``accumulative_counts`` iterations per
optimizer step, ``max_epochs`` passes (a config that trains for ``max_iters`` instead is reported as such). Time comes
from a ``tools/benchmark_train_step.py --json`` figure of the same config: its seconds per iteration scaled by the
data's mean LLM tokens per sample over the benchmark's (time is taken as proportional to tokens), with perfect
data-parallel scaling (every GPU runs its iteration in the benchmark's time; ZeRO's communication is not counted).
Without such a figure only the steps are given, and the report says so.
"""
import json
import math
from typing import Optional, Sequence

NO_FIGURE = ("no step-time figure: run `python tools/benchmark_train_step.py CONFIG --json step.json` on the "
             "training GPU and pass --step-json step.json (the README's GPU figures are pending)")


def estimate(cfg, samples: int, mean_tokens: float, gpus: Sequence[int], step_json: Optional[str]) -> dict:
    """{"assumptions": [...], "per_gpus": [{gpus, global_batch, iterations, optimizer_steps, hours}]}."""
    batch = int(cfg.train_dataloader.batch_size)
    accumulate = int(cfg.optim_wrapper.get("accumulative_counts", 1))
    train = cfg.train_cfg
    epochs, max_iters = train.get("max_epochs"), train.get("max_iters")
    assumptions = [f"{batch} samples per GPU and iteration, {accumulate} iteration(s) per optimizer step, "
                   + (f"{epochs} epoch(s)" if epochs else f"max_iters={max_iters} (not data-bound)")]
    seconds = None
    if step_json:
        with open(step_json) as f:
            figure = json.load(f)
        bench_tokens = figure["tokens_per_step"] / figure["batch_size"]
        seconds = figure["step_seconds"] * (batch / figure["batch_size"]) * (mean_tokens / bench_tokens)
        assumptions.append(
            f"{figure['step_seconds']:.4g} s per iteration of {figure['batch_size']} samples x "
            f"{bench_tokens:.0f} tokens on {figure['device_name']} ({step_json}), scaled to {batch} samples x "
            f"{mean_tokens:.0f} tokens: {seconds:.4g} s per iteration; time proportional to tokens; perfect "
            f"data-parallel scaling (no communication cost)")
    else:
        assumptions.append(NO_FIGURE)
    rows = []
    for count in gpus:
        per_epoch = math.ceil(samples / (batch * count)) if samples else 0
        iterations = per_epoch * epochs if epochs else int(max_iters)
        rows.append(dict(gpus=count, global_batch=batch * count * accumulate, iterations_per_epoch=per_epoch,
                         iterations=iterations, optimizer_steps=math.ceil(iterations / accumulate),
                         hours=None if seconds is None else iterations * seconds / 3600))
    return dict(assumptions=assumptions, seconds_per_iteration=seconds, per_gpus=rows)
