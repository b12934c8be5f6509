"""axolotl plugin: no trainer evaluation at the last step when the eval stage measures the same held-out loss.

The trainer evaluates the held-out split a few times a run (`evals_per_epoch: auto`, runner/schedule.py), the
last time at its last step; the eval stage then loads the trained weights and measures the loss of the same
records again (and scores their answers). The trainer's copy of that last figure cost ~2 s of a 135M model's
job on an H100 and of the CPU default (bench/RESULTS.md §13) and told nothing new. runner/plan.py adds this
plugin only when the eval stage will score the whole held-out split (stages.eval on, no eval.limit); the
eval stage's tuned loss then closes the run's held-out curve (runner/pipeline.py `close_curve`), so the
curve's verdict (runner/curve.py) still judges the end of training.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback


class NoEvaluationAtTheEnd(TrainerCallback):
    """After the trainer's own flow callback has decided (it runs first), take back an evaluation at the
    last step (step schedules) or after the last epoch (epoch schedules)."""

    def _at_the_end(self, state, control):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_evaluate = False
        return control

    def on_step_end(self, args, state, control, **kwargs):
        return self._at_the_end(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        return self._at_the_end(state, control)


class LastEvaluationPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [NoEvaluationAtTheEnd()]
