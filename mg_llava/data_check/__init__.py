"""The pre-flight data check: every dataset of a training config read as training reads it, before training.

:func:`check_config` (CLI: ``tools/check_data.py``) reports what would be lost (:data:`KINDS`: missing, misplaced
and unreadable images/videos, samples without box entries, box entries without samples, samples cut by
``max_length``), the data's statistics (image sizes, tokens per sample, boxes per image, the modality mix, total
tokens; histograms as PNG) and the steps and time of a run; ``write_clean`` writes the files without the bad samples.
"""
from .check import check_config
from .problems import KINDS, Problem

__all__ = ["KINDS", "Problem", "check_config"]
