"""The pipeline's stages, each a command over a run folder plus what to record when it ends.

Backends (local, Modal) run the same stages through runner.pipeline; nothing here knows where it runs.
Heavy work happens in the stage's own process (axolotl, or `python -m runner.stages.<name>`), so the
CLI never imports torch, transformers or axolotl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def stage_env(config: dict[str, Any], offline: bool = True) -> dict[str, str]:
    """Environment for stage processes: no telemetry, the runner's model cache, unbuffered output."""
    env = {
        "AXOLOTL_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_CACHE": str(Path(config["cache_dir"]) / "hub"),
        # the stages' imports from one bytecode file per environment (runner.stages.import_bundle); a user's 0 stays
        "RUNNER_IMPORT_BUNDLE": os.environ.get("RUNNER_IMPORT_BUNDLE") or str(Path(config["cache_dir"]) / "imports"),
        # numba's compiled code (axolotl's sample packer: runner.stages.import_patches); a user's own folder stays
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(Path(config["cache_dir"]) / "numba"),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")) if p),
    }
    if config.get("dataset_num_proc") == 0:
        # axolotl saves prepared data with `dataset_num_proc or <its default process count>`: 0 would mean
        # every CPU; its default count comes from this variable, so the save stays in-process too
        env["AXOLOTL_DATASET_NUM_PROC"] = "0"
    from runner.stages import cuda_toolkit

    env.update(cuda_toolkit.stage_vars())   # DeepSpeed's import needs a CUDA toolkit on a GPU machine
    if offline:
        # prepare has fetched the model: later stages must not reach for the network (or stall offline)
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
