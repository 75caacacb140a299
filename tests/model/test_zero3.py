"""mg_llava/model/zero3.py: the gloo all-gather fix for DeepSpeed's ZeRO-3 partition code.

Without it 6 of 15 two-process ZeRO-3 runs on CPU started from uninitialised parameter memory (a NaN or a slightly
different first loss; tests/training/test_deepspeed_training.py compares ZeRO-3's first loss to ZeRO-2's). Here: the
fix is installed by importing the model package, and it finishes exactly the asynchronous all-gathers on gloo groups.
"""
import pytest
import torch
import torch.distributed as dist

import mg_llava.model  # noqa: F401  (installs the fix)
from mg_llava.model.zero3 import _GlooAllGathersWait, wait_for_gloo_all_gathers


class Handle:
    def __init__(self):
        self.waits = 0

    def wait(self):
        self.waits += 1
        return True


class FakeComm:
    """Records the all-gathers it starts; anything else is an ordinary attribute."""

    def __init__(self):
        self.handles = []
        self.world_size = 2

    def _start(self, *args, **kwargs):
        self.handles.append(Handle())
        return self.handles[-1]

    all_gather_into_tensor = all_gather = allgather_fn = _start


@pytest.fixture
def gloo_group():
    """A one-process gloo group (the kind the CPU ZeRO-3 runs use)."""
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()


def test_importing_the_model_package_installs_the_fix_once():
    from deepspeed.runtime.zero import partition_parameters

    installed = partition_parameters.dist
    assert isinstance(installed, _GlooAllGathersWait)
    wait_for_gloo_all_gathers()
    assert partition_parameters.dist is installed  # not wrapped twice
    assert installed.get_world_size is installed.comm.get_world_size  # the rest is deepspeed.comm's own


@pytest.mark.parametrize("name", ["all_gather_into_tensor", "all_gather", "allgather_fn"])
def test_async_all_gathers_on_gloo_have_finished_when_the_call_returns(gloo_group, name):
    comm = _GlooAllGathersWait(FakeComm())
    gather = getattr(comm, name)
    handle = gather(torch.zeros(2), torch.zeros(1), group=gloo_group, async_op=True)
    assert handle.waits == 1
    handle = gather(torch.zeros(2), torch.zeros(1), group=None, async_op=True)  # the default group: gloo too
    assert handle.waits == 1
    handle = gather(torch.zeros(2), torch.zeros(1), group=gloo_group, async_op=False)  # blocking already
    assert handle.waits == 0
    assert comm.world_size == 2


def test_without_a_process_group_nothing_is_waited_for():
    comm = _GlooAllGathersWait(FakeComm())
    assert not dist.is_initialized()
    assert comm.all_gather_into_tensor(torch.zeros(2), torch.zeros(1), async_op=True).waits == 0

