"""Which weights a run's "base" and "tuned" models are, from its run folder and composed config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.evals.generate import ModelRef


class MissingModel(UserError):
    """The run has no tuned weights to load (yet)."""


def base_model(config: dict[str, Any]) -> ModelRef:
    return ModelRef(path=str(config["base_model"]), tokenizer=config.get("tokenizer_config") or None)


def outputs_dir(run_dir: Path, config: dict[str, Any]) -> Path:
    """<run_dir>/outputs; the configured output_dir if the run was written elsewhere."""
    local = Path(run_dir) / "outputs"
    configured = Path(config["output_dir"]) if config.get("output_dir") else local
    return local if local.is_dir() or not configured.is_dir() else configured


def tuned_model(run_dir: Path, config: dict[str, Any]) -> ModelRef:
    """The merged model if the merge stage wrote one; else base + adapter; else a full fine-tune's outputs."""
    outputs = outputs_dir(run_dir, config)
    merged = outputs / "merged"
    if (merged / "config.json").is_file():
        return ModelRef(path=str(merged))
    if config.get("adapter"):
        if (outputs / "adapter_config.json").is_file():
            tokenizer = str(outputs) if _has_tokenizer(outputs) else config.get("tokenizer_config") or None
            return ModelRef(path=str(config["base_model"]), adapter=str(outputs), tokenizer=tokenizer)
        raise MissingModel(f"run {Path(run_dir).name} has no merged model ({merged}) and no adapter "
                           f"({outputs / 'adapter_config.json'}): did its train stage finish?")
    if (outputs / "config.json").is_file():
        return ModelRef(path=str(outputs))
    raise MissingModel(f"run {Path(run_dir).name} has no trained model in {outputs}: did its train stage finish?")


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
