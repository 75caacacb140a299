"""Deliberately broken training, for the tests that must catch it (tests of the tests); never in a recipe.

A test selects one by overriding a config's type with the dotted path (mmengine's registry imports it), e.g.
``--cfg-options model.type=mg_llava.testing.broken_variants.PerProcessMeanLoss``.
"""
from mmengine.optim import OptimWrapper
from xtuner.model import LLaVAModel

from mg_llava.model.mg_llava_model import MGLLaVAModel


class PerProcessMeanLoss(MGLLaVAModel):
    """XTuner's loss: each process's own answer-token mean, so that data-parallel training averages per process
    (wrong when the processes hold different numbers of answer tokens)."""

    def compute_loss(self, data, data_samples=None):
        return LLaVAModel.compute_loss(self, data, data_samples)


class ResumeWithoutExpAvgSq(OptimWrapper):
    """Resumes AdamW with its second moments lost (zeroed), as a checkpoint or loader that dropped ``exp_avg_sq``."""

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for state in self.optimizer.state.values():
            state["exp_avg_sq"].zero_()
