"""Several LLaVA box datasets as one, keeping what XTuner's length-grouped sampler reads."""
from typing import List

from torch.utils.data import ConcatDataset

from ..registry import MODELS, build


@MODELS.register_module()
class ConcatLLaVABoxDataset(ConcatDataset):
    """Concatenation of :class:`LLaVABoxDataset` configs (or built datasets), e.g. LLaVA-665K + ALLaVA + extras.

    Unlike XTuner's ``ConcatDataset`` it exposes ``modality_length`` (the parts' lists, joined), so stage 2 can use
    ``LengthGroupedSampler(length_property='modality_length')`` over the whole mixture.

    Keyword arguments are settings every part's config shares (tokenizer, template, image views, limits): each part
    gets them unless it sets its own, so a config states them once for the whole mixture.
    """

    def __init__(self, datasets, **shared):
        if not datasets:
            raise ValueError("ConcatLLaVABoxDataset needs at least one dataset")
        built = [type(dataset).__name__ for dataset in datasets if not isinstance(dataset, dict)]
        if shared and built:
            raise TypeError(f"ConcatLLaVABoxDataset: the shared settings {sorted(shared)} apply to dataset configs, "
                            f"but {len(built)} of the datasets are already built ({built[0]})")
        super().__init__([build(dataset, **shared) for dataset in datasets])

    @property
    def modality_length(self) -> List[int]:
        lengths = []
        for dataset in self.datasets:
            lengths.extend(dataset.modality_length)
        return lengths

    @property
    def modality(self) -> List[int]:
        """0 text, 1 image, 2 video per sample (for :class:`ModalityLengthGroupedSampler`)."""
        return [m for dataset in self.datasets for m in dataset.modality]

    def __repr__(self):
        parts = ", ".join(f"{type(d).__name__}({len(d)})" for d in self.datasets)
        return f"{type(self).__name__}([{parts}])"
