"""Taggers: name what is in an image so the open-vocabulary detector knows what to look for."""
from .base import Tagger
from .clip import CLIPTagger
from .fixed import FixedTagger
from .ram_plus import RAMPlusTagger

__all__ = ["Tagger", "FixedTagger", "CLIPTagger", "RAMPlusTagger"]
