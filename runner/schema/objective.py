"""The `objective` node: the figure a sweep compares its jobs by, and Optuna optimises (`-m hparams_search=...`)."""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("minimize", "maximize")


@dataclass
class ObjectiveConfig:
    metric: str = "eval.tuned.eval_loss"   # a path into the run's metrics.json, e.g. eval.tuned.execution_accuracy
    direction: str = "minimize"            # minimize | maximize


CHOICES = {"objective.direction": DIRECTIONS}
