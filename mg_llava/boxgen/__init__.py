"""Box generation (offline data preparation and on-the-fly for chat): tagger -> OWLv2 -> optional NMS.

Library side of ``data_prep/``; see :mod:`mg_llava.boxgen.generator` for the one-image call.
"""
from .generator import BoxGenerator
from .owlv2 import OWLv2Detector
from .taggers import CLIPTagger, FixedTagger, RAMPlusTagger, Tagger
from .vocab import EmptyVocabularyError, load_vocabulary

__all__ = [
    "BoxGenerator", "OWLv2Detector", "Tagger", "FixedTagger", "CLIPTagger", "RAMPlusTagger",
    "EmptyVocabularyError", "load_vocabulary",
]
