"""The `model_spec` node: a model's architecture figures, for the memory model, estimates and MFU (not
passed to axolotl). A figure left out (null) is read off the base model's own config.json when the job is
planned (runner/models/spec.py: model=auto gives none); a shipped group states them, so that a dry run for a
hub model needs no download."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from runner.schema.ranges import at_least, positive

BUILDS = ("tiny",)


@dataclass
class ModelSpec:
    params_b: Optional[float] = None          # weights to hold, billions
    active_params_b: Optional[float] = None   # weights used per token (MoE: fewer), billions
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    intermediate_size: Optional[int] = None
    vocab_size: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    num_experts: Optional[int] = None         # null: from config.json, or 1 (no experts)
    source: Optional[str] = None              # where null figures were read (set when planned; null: the group)
    build: Optional[str] = None          # null: download base_model from the hub; tiny: built locally


RANGES = {
    "model_spec.params_b": positive(),
    "model_spec.active_params_b": positive(),
    **{f"model_spec.{key}": at_least(1) for key in ("hidden_size", "num_layers", "intermediate_size", "vocab_size",
                                                    "num_heads", "num_kv_heads", "num_experts")},
}
CHOICES = {"model_spec.build": (None, *BUILDS)}
