"""Checkpoints written the way stock mmengine / XTuner / DeepSpeed write them, by a process that never imports
mg_llava (so mmengine's own ``HistoryBuffer`` pickling, with ``getattr(HistoryBuffer, 'mean')``, is in the files).

    python stock_checkpoints.py weights WEIGHTS.pt OUT_DIR   # every layout, holding the tensors of WEIGHTS
    python stock_checkpoints.py resume WORK_DIR                       # a 3-iteration run of the regression model

The tests call :func:`write_stock_checkpoints` / :func:`write_stock_resume_checkpoint`, which run this file in a
subprocess. Only torch and mmengine are imported here.
"""
import json
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import torch
import torch.nn as nn

LAYOUTS = ("mmengine", "mmengine_ddp", "plain", "deepspeed_latest", "deepspeed_mmengine")
DEEPSPEED_OPTIMIZER_FILE = "zero_pp_rank_0_mp_rank_00_optim_states.pt"


def _run(args, cwd):
    # -I: isolated mode, so neither PYTHONPATH nor the current folder can bring mg_llava in.
    done = subprocess.run([sys.executable, "-I", osp.abspath(__file__), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"stock writer failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_stock_checkpoints(state_dict, out_dir):
    """Write ``state_dict`` in every layout of :data:`LAYOUTS`; returns ``{layout: path}``."""
    os.makedirs(out_dir, exist_ok=True)
    weights = osp.join(out_dir, "weights.pt")
    torch.save(dict(state_dict), weights)
    return _run(["weights", weights, out_dir], out_dir)


def write_stock_resume_checkpoint(work_dir):
    """Train :func:`regression_runner` for 3 iterations with stock mmengine; returns the ``iter_3.pth`` path."""
    os.makedirs(work_dir, exist_ok=True)
    return _run(["resume", work_dir], work_dir)["iter_3"]


# ---------------------------------------------------------------------------------------------- the stock side


def _base_model():
    from mmengine.model import BaseModel

    return BaseModel


class Payload:
    """Pickles as ``os.system(command)``: what a malicious checkpoint would run on full unpickling."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def regression_runner(work_dir, max_iters, resume=False, load_from=None):
    """The small mmengine run of tests/test_resume.py: a linear regression, AdamW, LinearLR, checkpoints every 3."""
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Regression(_base_model()):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, x, y, mode="loss"):
            return {"loss": ((self.linear(x).squeeze(-1) - y) ** 2).mean()}

    class Points(Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            x = torch.randn(4, generator=torch.Generator().manual_seed(i))
            return dict(x=x, y=x.sum() * 0.5)

    return Runner(
        model=dict(type=Regression), work_dir=str(work_dir),
        train_dataloader=dict(dataset=Points(), sampler=dict(type="DefaultSampler", shuffle=True),
                              collate_fn=dict(type="default_collate"), batch_size=4, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.05)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False)),
        randomness=dict(seed=11), resume=resume, load_from=load_from, default_scope="mmengine",
    )


def _weights_runner(tensors, work_dir):
    """An mmengine run of two SGD steps at lr 0 whose model holds ``tensors`` as parameters under their names."""
    from mmengine.runner import Runner

    class Weights(_base_model()):
        def __init__(self):
            super().__init__()
            for key, value in tensors.items():
                *path, leaf = key.split(".")
                module = self
                for part in path:
                    if part not in module._modules:
                        module.add_module(part, nn.Module())
                    module = module._modules[part]
                module.register_parameter(leaf, nn.Parameter(value.clone()))

        def forward(self, x, mode="loss"):
            return {"loss": sum((p.float() * x.sum()).sum() for p in self.parameters())}

    return Runner(
        model=Weights(), work_dir=work_dir,
        train_dataloader=dict(dataset=[dict(x=torch.zeros(1))] * 4, sampler=dict(type="DefaultSampler", shuffle=False),
                              collate_fn=dict(type="default_collate"), batch_size=1, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.0, momentum=0.9)),  # state, but weights unchanged
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
        default_scope="mmengine",
    )


def _write_weights(weights, out_dir):
    from mmengine.config import ConfigDict

    tensors = torch.load(weights, weights_only=True)
    _weights_runner(tensors, osp.join(out_dir, "work")).train()
    source = osp.join(out_dir, "work", "iter_2.pth")
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)  # written just now by this process
    assert "getattr" in open(osp.join(source), "rb").read().decode("latin1"), "expected stock HistoryBuffer pickles"
    state_dict = checkpoint["state_dict"]
    marker = osp.join(out_dir, "OPTIMIZER_FILE_WAS_UNPICKLED")
    paths = dict(mmengine=source, plain=osp.join(out_dir, "plain.pth"), mmengine_ddp=osp.join(out_dir, "ddp.pth"))
    torch.save(state_dict, paths["plain"])
    torch.save(dict(checkpoint, state_dict=OrderedDict(("module." + k, v) for k, v in state_dict.items())),
               paths["mmengine_ddp"])

    # DeepSpeed's model-states file as mmengine's DeepSpeedStrategy has it written (client state = mmengine's
    # meta, message hub, schedulers and optimizer wrapper; ds_config is the strategy's ConfigDict).
    model_states = dict(
        module=state_dict, buffer_names=[], optimizer=None,
        param_shapes=[OrderedDict((k, v.shape) for k, v in state_dict.items())], frozen_param_shapes=None,
        shared_params={}, frozen_param_fragments=None, lr_scheduler=None, data_sampler=None, random_ltd=None,
        sparse_tensor_module_names=set(), skipped_steps=0, global_steps=2, global_samples=2, dp_world_size=1,
        mp_world_size=1, ds_config=ConfigDict(zero_optimization=dict(stage=2), bf16=dict(enabled=True)),
        ds_version="0.16.2", meta=checkpoint["meta"], message_hub=checkpoint["message_hub"],
        param_schedulers=checkpoint.get("param_schedulers", []), optim_wrapper=checkpoint["optimizer"])
    latest = osp.join(out_dir, "deepspeed_latest")
    os.makedirs(osp.join(latest, "global_step2"))
    with open(osp.join(latest, "latest"), "w") as f:
        f.write("global_step2")
    in_mmengine_folder = osp.join(out_dir, "work_ds", "iter_2.pth")
    os.makedirs(in_mmengine_folder)
    for folder in (osp.join(latest, "global_step2"), in_mmengine_folder):
        torch.save(model_states, osp.join(folder, "mp_rank_00_model_states.pt"))
        # The optimizer-state file is never opened by a weights loader; if it were, this would run.
        torch.save(dict(optimizer_state_dict=Payload(f"touch {marker}")), osp.join(folder, DEEPSPEED_OPTIMIZER_FILE))
    paths.update(deepspeed_latest=latest, deepspeed_mmengine=in_mmengine_folder, optimizer_marker=marker)
    return paths


def main(argv):
    if argv[0] == "weights":
        result = _write_weights(argv[1], argv[2])
    elif argv[0] == "resume":
        regression_runner(argv[1], max_iters=3).train()
        result = dict(iter_3=osp.join(argv[1], "iter_3.pth"))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")
    assert "mg_llava" not in sys.modules, "the stock writer must not import mg_llava"
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
