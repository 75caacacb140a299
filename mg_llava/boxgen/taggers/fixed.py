"""A fixed list of names for every image (the paper's COCO-80 ablation)."""
from typing import Sequence, Union

from mg_llava.registry import MODELS

from ..vocab import load_vocabulary, vocabulary_fingerprint
from .base import Tagger


@MODELS.register_module()
class FixedTagger(Tagger):
    """Tags every image with the whole vocabulary: a shipped name (``'coco80'``, ``'lvis'``), a file or a list.

    With COCO-80 the paper found far more images without boxes than with RAM tags (71,118 against 43,654 of
    389,722), so this is a baseline, not the default.
    """

    def __init__(self, vocabulary: Union[str, Sequence[str]] = "coco80"):
        self.vocabulary = load_vocabulary(vocabulary)

    def describe(self):
        return dict(type=type(self).__name__, vocabulary_size=len(self.vocabulary),
                    vocabulary_sha1=vocabulary_fingerprint(self.vocabulary))

    def tag(self, images):
        return [list(self.vocabulary) for _ in images]
