"""The `model_spec` node: a model group's architecture figures, for the memory model, estimates and MFU
(not passed to axolotl). Every figure is required: a new conf/model/NAME.yaml that leaves one out fails
when it is composed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from runner.schema.ranges import at_least, positive

BUILDS = ("tiny",)


@dataclass
class ModelSpec:
    params_b: float = MISSING            # weights to hold, billions
    active_params_b: float = MISSING     # weights used per token (MoE: fewer), billions
    hidden_size: int = MISSING
    num_layers: int = MISSING
    intermediate_size: int = MISSING
    vocab_size: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    num_experts: int = 1
    build: Optional[str] = None          # null: download base_model from the hub; tiny: built locally


RANGES = {
    "model_spec.params_b": positive(),
    "model_spec.active_params_b": positive(),
    **{f"model_spec.{key}": at_least(1) for key in ("hidden_size", "num_layers", "intermediate_size", "vocab_size",
                                                    "num_heads", "num_kv_heads", "num_experts")},
}
CHOICES = {"model_spec.build": (None, *BUILDS)}
