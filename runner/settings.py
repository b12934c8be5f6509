"""The runner's own top-level keys. Everything else at the top level of a composed config is axolotl's.

Keeping the two in one flat namespace is what lets `lora_r=32` work on the command line; this list is
what separates them again before the axolotl config is written. The keys and their types are declared
once, in runner/schema/config.py.
"""

from __future__ import annotations

from typing import Any

from runner.schema.config import RUNNER_KEYS
from runner.schema.stages import STAGES

__all__ = ["RUNNER_KEYS", "STAGES", "split_config"]


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(runner keys, axolotl keys) of a resolved composed config."""
    runner = {k: v for k, v in config.items() if k in RUNNER_KEYS}
    axolotl = {k: v for k, v in config.items() if k not in RUNNER_KEYS}
    return runner, axolotl
