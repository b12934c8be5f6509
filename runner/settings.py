"""The runner's own top-level keys. Everything else at the top level of a composed config is axolotl's.

Keeping the two in one flat namespace is what lets `lora_r=32` work on the command line; this list is
what separates them again before the axolotl config is written.
"""

from __future__ import annotations

from typing import Any

RUNNER_KEYS: dict[str, str] = {
    "dry_run": "print the composed axolotl config and the compute spec, run nothing",
    "detach": "Modal: submit and return at once with the run ids",
    "runs_root": "where run folders are created",
    "cache_dir": "base models (Hugging Face hub cache) and the tiny model",
    "run_name": "optional label appended to the run id",
    "run_id": "set by the runner when it creates the run folder",
    "run_dir": "the run folder, <runs_root>/<run_id>",
    "stages": "which stages run (prepare, preprocess, train, merge, eval)",
    "model_spec": "architecture figures of the model group (memory model, cost, MFU)",
    "gpu": "the gpu group's hardware spec (Modal string, count, memory, capabilities, price)",
    "backend": "the backend group's settings (local or modal)",
    "dataset": "the dataset group's file paths and record format",
    "eval": "the eval stage's settings",
}

STAGES = ("prepare", "preprocess", "train", "merge", "eval")


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(runner keys, axolotl keys) of a resolved composed config."""
    runner = {k: v for k, v in config.items() if k in RUNNER_KEYS}
    axolotl = {k: v for k, v in config.items() if k not in RUNNER_KEYS}
    return runner, axolotl
