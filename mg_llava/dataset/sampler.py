"""Batches of one modality (text only, image, video), grouped by length, as the released video recipe trained.

XTuner's ``LengthGroupedSampler`` separates text-only from multimodal samples by the sign of ``modality_length``;
with video in the mixture it would still put images and videos in one batch (which is correct here, only slower:
a video sample is T images). This sampler reads the dataset's ``modality`` (0 text, 1 image, 2 video) as well and
keeps every global batch to one modality, sorted by length inside mega-batches to cut padding.
"""
import math
from typing import Iterator, List, Optional, Sequence

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from ..registry import MODELS


def modality_grouped_indices(lengths: Sequence[int], modalities: Sequence[int], group_batch_size: int,
                             mega_batch_size: int, generator: torch.Generator) -> List[int]:
    """A permutation of ``range(len(lengths))`` in which each run of ``group_batch_size`` indices (a global batch)
    has one modality, except one final batch holding every modality's remainder; batches come in random order,
    and within each mega-batch of a modality the samples are sorted by length (longest first)."""
    if len(lengths) != len(modalities):
        raise ValueError(f"{len(lengths)} lengths but {len(modalities)} modalities")
    lengths = [abs(int(length)) for length in lengths]
    full, rest = [], []
    for modality in sorted(set(modalities)):
        members = torch.tensor([i for i, m in enumerate(modalities) if m == modality])
        members = members[torch.randperm(len(members), generator=generator)].tolist()
        batches = []
        for start in range(0, len(members), mega_batch_size):
            mega = sorted(members[start:start + mega_batch_size], key=lambda i: -lengths[i])
            batches += [mega[i:i + group_batch_size] for i in range(0, len(mega), group_batch_size)]
        full += [b for b in batches if len(b) == group_batch_size]
        rest += [i for b in batches if len(b) < group_batch_size for i in b]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [i for b in order for i in full[b]] + rest


@MODELS.register_module()
class ModalityLengthGroupedSampler(Sampler):
    """Length-grouped batches of one modality for ``LLaVABoxDataset`` / ``ConcatLLaVABoxDataset``.

    Args:
        dataset: exposes ``length_property`` (text lengths) and ``modality_property`` (0/1/2 per sample).
        per_device_batch_size: samples per process per optimizer step (batch size x gradient accumulation).
        mega_batch_mult: mega-batch = this many global batches, sorted by length inside; default as XTuner's
            (``min(len / (4 x global batch), 50)``, at least 1).
        seed: shuffling seed (synchronised across processes when None); the epoch is added each epoch.
        round_up: pad the index list (by repeating its start) so every process gets as many samples.
    """

    def __init__(self, dataset, per_device_batch_size: int, length_property: str = "modality_length",
                 modality_property: str = "modality", mega_batch_mult: Optional[int] = None,
                 seed: Optional[int] = None, round_up: bool = True):
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.lengths = list(getattr(dataset, length_property))
        self.modalities = list(getattr(dataset, modality_property))
        self.group_batch_size = per_device_batch_size * world_size
        if mega_batch_mult is None:
            mega_batch_mult = max(min(len(dataset) // (self.group_batch_size * 4), 50), 1)
        self.mega_batch_size = mega_batch_mult * self.group_batch_size
        self.seed = sync_random_seed() if seed is None else seed
        self.round_up = round_up
        self.epoch = 0
        if round_up:
            self.num_samples = math.ceil(len(dataset) / world_size)
        else:
            self.num_samples = math.ceil((len(dataset) - rank) / world_size)
        self.total_size = self.num_samples * world_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = modality_grouped_indices(self.lengths, self.modalities, self.group_batch_size,
                                           self.mega_batch_size, generator)
        if self.round_up:
            indices = (indices * math.ceil(self.total_size / len(indices)))[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
