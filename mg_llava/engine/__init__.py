"""Training-time hooks."""
from .sample_answers_hook import SampleAnswersHook

__all__ = ["SampleAnswersHook"]
