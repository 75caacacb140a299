"""mmengine's Runner saves and resumes under torch >= 2.6 (weights_only loading) and continues identically."""
import copy

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


def _runner(work_dir, max_iters, resume=False, load_from=None):
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
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.05)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False)),
        randomness=dict(seed=11),
        resume=resume,
        load_from=load_from,
        default_scope="mmengine",
    )


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    full = _runner(tmp_path / "full", max_iters=6)
    full.train()
    expected = copy.deepcopy(full.model.state_dict())

    _runner(tmp_path / "part", max_iters=3).train()
    ckpt = tmp_path / "part" / "iter_3.pth"
    assert ckpt.exists()
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["meta"]["iter"] == 3

    resumed = _runner(tmp_path / "part", max_iters=6, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
