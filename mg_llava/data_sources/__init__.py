"""Converters from the published formats of MG-LLaVA's training sources to the LLaVA format the dataset reads.

Most sources are LLaVA files already (LLaVA-Pretrain, LLaVA-665K, ShareGPT4V, the release's own JSONs). These are not:

- :mod:`.videochatgpt`: VideoInstruct-100K as Video-ChatGPT publishes it (question/answer pairs per video id);
- :mod:`.video_llava`: Video-LLaVA's training JSONs (the 703K Valley video captions, its VideoInstruct-100K
  conversion, and their mixes with LLaVA's images): LLaVA-like, with list-valued media fields and numeric,
  repeated ids;
- :mod:`.allava`: ALLaVA-4V's caption and instruction files (paths relative to the dataset's own root, ids per file).

Each converter returns the samples and a :class:`~.llava_format.ConversionReport` (what was read, changed and left
out, with reasons); ``data_prep/convert_*.py`` are their command lines (data_prep/README.md).
"""
from .allava import convert_allava
from .llava_format import ConversionReport, normalise_placeholder, write_llava
from .video_llava import convert_video_llava
from .videochatgpt import convert_videochatgpt

__all__ = ["ConversionReport", "convert_allava", "convert_video_llava", "convert_videochatgpt",
           "normalise_placeholder", "write_llava"]
