"""What a training checkpoint holds of the run, by parameter name: the fp32 weights and AdamW's two moments, read the
same way from an mmengine checkpoint (plain / DDP runs) and from a DeepSpeed ZeRO-2 or ZeRO-3 checkpoint folder, so
that runs on different process counts and strategies can be compared value by value.

A DeepSpeed folder holds each process's shard of the optimizer: ZeRO-2 one flat fp32 partition of all parameters per
process (``param_slice_mappings`` names each parameter's fragment in it), ZeRO-3 every parameter split across the
processes (``ceil(numel / processes)`` elements each, zero-padded, one parameter after another in ``param_shapes``
order). Both are put back together here, in rank order.
"""
import glob
import math
import os.path as osp
import re
from collections import defaultdict

import torch

STATES = ("weight", "exp_avg", "exp_avg_sq")


def _load(path):
    # DeepSpeed's files hold its own classes (fragment addresses, the ZeRO stage enum): a test reads its own output
    return torch.load(path, map_location="cpu", weights_only=False)


def mmengine_state(path):
    """{name: {"weight", "exp_avg", "exp_avg_sq"}} of an mmengine ``iter_N.pth`` (a plain or DDP run). The
    optimizer numbers the model's parameters in ``named_parameters`` order and holds state for the trained ones
    only; the checkpoint's ``state_dict`` keeps exactly those, in the same order."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    weights = checkpoint["state_dict"]
    moments = [checkpoint["optimizer"]["state"][i] for i in sorted(checkpoint["optimizer"]["state"])]
    if len(moments) != len(weights):
        raise AssertionError(f"{path}: optimizer state for {len(moments)} tensors, {len(weights)} trained tensors")
    out = {}
    for (name, weight), moment in zip(weights.items(), moments):
        if moment["exp_avg"].shape != weight.shape:
            raise AssertionError(f"{path}: {name} {tuple(weight.shape)} paired with a state of "
                                 f"{tuple(moment['exp_avg'].shape)}")
        out[name] = {"weight": weight.float(), "exp_avg": moment["exp_avg"], "exp_avg_sq": moment["exp_avg_sq"]}
    return out


def _rank_files(folder, pattern):
    files = glob.glob(osp.join(folder, pattern))
    ranks = [int(re.search(r"_rank_(\d+)_mp_rank", f).group(1)) for f in files]
    if sorted(ranks) != list(range(len(files))) or not files:
        raise AssertionError(f"{folder}: optimizer shards of ranks {sorted(ranks)}")
    return [f for _, f in sorted(zip(ranks, files))]


def deepspeed_state(folder):
    """{name: {"weight", "exp_avg", "exp_avg_sq"}} of a DeepSpeed checkpoint folder (ZeRO-2 or ZeRO-3): the fp32
    master weights and both moments, each put back together from every process's shard."""
    shards = [_load(f)["optimizer_state_dict"] for f in _rank_files(folder, "*zero_pp_rank_*_optim_states.pt")]
    if "param_slice_mappings" in shards[0]:  # ZeRO-1/2
        parts = defaultdict(lambda: defaultdict(list))
        shapes = {}
        for group_shapes in _load(osp.join(folder, "mp_rank_00_model_states.pt"))["param_shapes"]:
            shapes.update(group_shapes)
        for shard in shards:
            for g, mapping in enumerate(shard["param_slice_mappings"]):
                moments = shard["base_optimizer_state"]["state"][g]
                flat = {"weight": shard["single_partition_of_fp32_groups"][g], "exp_avg": moments["exp_avg"],
                        "exp_avg_sq": moments["exp_avg_sq"]}
                for name, fragment in mapping.items():
                    for state, tensor in flat.items():
                        parts[name][state].append(tensor.narrow(0, fragment.start, fragment.numel))
        return {name: {state: torch.cat(parts[name][state]).view(shapes[name]) for state in STATES}
                for name in shapes}
    # ZeRO-3: one parameter group here (the recipes' optimizer has one)
    shapes = {}
    for group_shapes in _load(_rank_files(folder, "*zero_pp_rank_*_model_states.pt")[0])["param_shapes"]:
        shapes.update(group_shapes)
    flats = []
    for shard in shards:
        if len(shard["fp32_flat_groups"]) != 1:
            raise AssertionError(f"{folder}: {len(shard['fp32_flat_groups'])} parameter groups")
        moments = shard["optimizer_state_dict"]["state"][0]
        flats.append({"weight": shard["fp32_flat_groups"][0], "exp_avg": moments["exp_avg"],
                      "exp_avg_sq": moments["exp_avg_sq"]})
    out, offset = {}, 0
    for name, shape in shapes.items():
        numel = math.prod(shape)
        share = math.ceil(numel / len(shards))
        out[name] = {state: torch.cat([flat[state].narrow(0, offset, share) for flat in flats])[:numel].view(shape)
                     for state in STATES}
        offset += share
    return out


def max_gaps(reference, other):
    """{state: (largest gap over every tensor, its tensor's name)}: for the moments relative to the tensor's largest
    value in ``reference``, for the weights absolute (a step moves a weight by about the learning rate, whatever its
    value). The two must hold the same names and shapes."""
    if reference.keys() != other.keys():
        raise AssertionError(f"different tensors: {sorted(reference.keys() ^ other.keys())[:5]}")
    gaps = {}
    for state in STATES:
        worst = (-1.0, "")
        for name in reference:
            ref, oth = reference[name][state].double(), other[name][state].double()
            if ref.shape != oth.shape:
                raise AssertionError(f"{name} {state}: shapes {tuple(ref.shape)} and {tuple(oth.shape)}")
            gap = (oth - ref).abs().max().item()
            scale = 1.0 if state == "weight" else ref.abs().max().item()
            worst = max(worst, (gap / scale if scale > 0 else gap, name))
        gaps[state] = worst
    return gaps


def assert_same_state(reference, other, tolerances, what):
    """Every tensor of ``other`` within ``tolerances[state]`` of ``reference`` (as :func:`max_gaps` measures); the
    message gives each state's worst gap. Returns the gaps."""
    gaps = max_gaps(reference, other)
    report = ", ".join(f"{state} {gap:.3g} ({name}; bound {tolerances[state]:.3g})"
                       for state, (gap, name) in gaps.items())
    assert all(gap <= tolerances[state] for state, (gap, _) in gaps.items()), f"{what}: largest gaps {report}"
    return gaps
