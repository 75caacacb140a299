from .runner import MGLLaVARunner

__all__ = ["MGLLaVARunner"]
