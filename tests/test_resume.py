"""mmengine's Runner saves and resumes under torch >= 2.6 (weights_only loading) and continues identically."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mg_llava  # noqa: F401  (applies the checkpoint allow-list)


class _Regression(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x, y, mode="loss"):
        loss = ((self.linear(x).squeeze(-1) - y) ** 2).mean()
        return {"loss": loss}


class _Points(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        return dict(x=x, y=x.sum() * 0.5)


def _runner(work_dir, max_iters, resume=False, load_from=None, optim_wrapper="OptimWrapper"):
    return Runner(
        model=dict(type=_Regression),  # built after the runner seeds, so both runs start alike
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Points(),
            sampler=dict(type="DefaultSampler", shuffle=True),
            collate_fn=dict(type="default_collate"),
            batch_size=4,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(type=optim_wrapper, optimizer=dict(type="AdamW", lr=0.05)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False)),
        randomness=dict(seed=11),
        resume=resume,
        load_from=load_from,
        default_scope="mmengine",
    )


def _assert_same_training(runner, expected, expected_moments):
    """The same operations on the same bits: exact, AdamW's moments included."""
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    moments = runner.optim_wrapper.optimizer.state_dict()["state"]
    assert moments.keys() == expected_moments.keys()
    for index, state in moments.items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(state[name], expected_moments[index][name], rtol=0, atol=0, msg=name)


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    full = _runner(tmp_path / "full", max_iters=6)
    full.train()
    expected = copy.deepcopy(full.model.state_dict())
    expected_moments = copy.deepcopy(full.optim_wrapper.optimizer.state_dict()["state"])

    _runner(tmp_path / "part", max_iters=3).train()
    ckpt = tmp_path / "part" / "iter_3.pth"
    assert ckpt.exists()
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["meta"]["iter"] == 3

    resumed = _runner(tmp_path / "part", max_iters=6, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 6
    _assert_same_training(resumed, expected, expected_moments)

    # a test of the check: resumed without AdamW's second moments, the run leaves it
    broken = _runner(tmp_path / "broken", max_iters=6, resume=True, load_from=str(ckpt),
                     optim_wrapper="mg_llava.testing.broken_variants.ResumeWithoutExpAvgSq")
    broken.train()
    with pytest.raises(AssertionError):
        _assert_same_training(broken, expected, expected_moments)
