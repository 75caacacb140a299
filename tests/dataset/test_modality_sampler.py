"""ModalityLengthGroupedSampler: every global batch holds one modality; all samples are drawn; ranks split batches."""
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from mg_llava.dataset import ModalityLengthGroupedSampler
from mg_llava.dataset.sampler import modality_grouped_indices


class Sized(SimpleNamespace):
    def __len__(self):
        return len(self.modality)


def make(modalities, batch, world_size=1, rank=0, **kwargs):
    dataset = Sized(modality=list(modalities), modality_length=[(7 + 13 * i % 97) * (1 if m else -1)
                                                                  for i, m in enumerate(modalities)])
    with mock.patch("mg_llava.dataset.sampler.get_dist_info", return_value=(rank, world_size)):
        return ModalityLengthGroupedSampler(dataset, per_device_batch_size=batch, seed=1, **kwargs), dataset


def test_each_global_batch_is_one_modality_except_the_remainder():
    modalities = [0] * 10 + [1] * 23 + [2] * 17
    sampler, dataset = make(modalities, batch=4, mega_batch_mult=2)
    order = list(sampler)
    assert sorted(order) == list(range(50))
    full = (10 // 4 + 23 // 4 + 17 // 4) * 4
    batches = [order[i:i + 4] for i in range(0, full, 4)]
    assert all(len({modalities[i] for i in b}) == 1 for b in batches)
    assert {modalities[b[0]] for b in batches} == {0, 1, 2}
    # sorted by length inside each batch (longest first)
    assert all([abs(dataset.modality_length[i]) for i in b] == sorted((abs(dataset.modality_length[i]) for i in b),
                                                                     reverse=True) for b in batches)
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(sampler) == list(range(50))


def test_ranks_share_each_global_batch_of_one_modality():
    modalities = [1] * 16 + [2] * 16
    orders = []
    for rank in range(2):
        sampler, _ = make(modalities, batch=2, world_size=2, rank=rank)
        orders.append(list(sampler))
    assert len(orders[0]) == len(orders[1]) == 16
    assert sorted(orders[0] + orders[1]) == list(range(32))
    for step in range(8):  # step k: 2 samples on each rank, 4 of one modality in all
        chosen = orders[0][2 * step:2 * step + 2] + orders[1][2 * step:2 * step + 2]
        assert len({modalities[i] for i in chosen}) == 1


def test_modalities_must_match_lengths():
    with pytest.raises(ValueError, match="3 lengths but 2 modalities"):
        modality_grouped_indices([1, 2, 3], [0, 1], 2, 4, torch.Generator())
