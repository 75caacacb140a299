"""The training loss as one mean over every answer token of the global batch, however it is split across processes.

XTuner's ``LLaVAModel`` returns each process's own token mean, and data-parallel training (DDP, DeepSpeed ZeRO)
averages the processes' gradients: a mean of per-process means, which weighs a token of a process holding few answer
tokens more than one of a process holding many. One process with the whole batch would take one mean over all of its
tokens; with conversations of different lengths the two differ (by the spread of the per-process token counts).

Each process instead divides its token sum by the global token count over the number of processes (transformers'
``num_items_in_batch``): the processes' gradients, averaged, are then the gradient of the global token mean. Within a
process, gradient accumulation (``accumulative_counts`` > 1) still weighs each micro-batch's mean alike, as mmengine
and DeepSpeed scale each micro-batch's loss by 1 / accumulative_counts; the recipes accumulate only where a GPU count
below 8 keeps the global batch.
"""
import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from xtuner.utils import IGNORE_INDEX


def tokens_per_process(labels: torch.Tensor) -> torch.Tensor:
    """(B, L) labels -> the global batch's answer tokens over the number of processes (a float scalar on the labels'
    device; at least 1 / processes, so a batch without targets gives a zero loss, not 0 / 0).

    A causal LM predicts token t + 1 from token t: the targets are ``labels[:, 1:]`` (transformers shifts them the
    same way). Every process of the data-parallel group must call this in the same step (one all-reduce)."""
    count = (labels[:, 1:] != IGNORE_INDEX).sum().to(torch.float32)
    all_reduce(count, op="sum")  # no-op in a single process
    return count.clamp(min=1) / get_world_size()


def mean_over_processes(log_vars: dict) -> dict:
    """The logged values averaged over the processes, so that the log shows the global batch's token-mean loss
    rather than the first process's share of it. Logging only: the tensors are detached copies.

    Processes may log different names in one step (a text-only batch has no ``visual_norm``, an RGLF batch without
    images no ``router_acc``): the names are gathered first, and each value is averaged over the processes that
    logged it. Reducing the values in each process's own order would pair different names, or hang on unequal
    lengths."""
    world = get_world_size()
    if world == 1:
        return log_vars
    names = sorted(set().union(*all_gather_object(list(log_vars))))
    device = next(iter(log_vars.values())).device
    values = torch.zeros(2, len(names), dtype=torch.float32, device=device)  # sums, and how many processes logged
    for i, name in enumerate(names):
        if name in log_vars:
            values[0, i], values[1, i] = log_vars[name].detach().float(), 1
    all_reduce(values, op="sum")
    return type(log_vars)((name, values[0, i] / values[1, i]) for i, name in enumerate(names))
