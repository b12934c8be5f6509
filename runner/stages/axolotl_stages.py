"""The stages axolotl does itself: preprocess, train, merge. Each is one axolotl process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.stages import python_module


BOOT = "runner.stages.boot"   # the collector paused through the imports (runner/stages/boot.py)


def preprocess_command(run_dir: Path, config: dict[str, Any]) -> list[str]:
    return python_module(BOOT, "axolotl.cli.preprocess", str(run_dir / "config.yml"))


def train_command(run_dir: Path, config: dict[str, Any]) -> list[str]:
    processes = int(config["gpu"]["count"])
    config_file = str(run_dir / "config.yml")
    if processes == 1:
        return python_module(BOOT, "axolotl.cli.train", config_file)
    # One process per GPU. Called as a module so it works without an activated virtualenv.
    return python_module(
        "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--num_processes", str(processes),
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", BOOT, "axolotl.cli.train", config_file,
    )


def merge_command(run_dir: Path, config: dict[str, Any]) -> list[str] | None:
    if not config.get("adapter"):
        return None  # full fine-tune: outputs/ already holds the whole model
    return python_module("axolotl.cli.merge_lora", str(run_dir / "config.yml"))


def train_metrics(records: list[dict]) -> dict[str, Any]:
    """First and last logged losses, from the trainer's metric lines, and what the held-out curve says
    about the run's length (runner.curve)."""
    from runner import curve

    losses = [r["loss"] for r in records if isinstance(r.get("loss"), float)]
    held = [r for r in records if isinstance(r.get("eval_loss"), float)]
    evals = [r["eval_loss"] for r in held]
    summary = next((r for r in records if "train_runtime" in r), {})
    metrics: dict[str, Any] = {}
    if losses:
        metrics["train_loss"] = {"first": losses[0], "last": losses[-1], "logged": len(losses)}
    if evals:
        metrics["eval_loss"] = {"first": evals[0], "last": evals[-1], "logged": len(evals)}
        if all(isinstance(held[i].get("epoch"), (int, float)) for i in (0, -1)):
            metrics["eval_loss"].update(first_epoch=held[0]["epoch"], last_epoch=held[-1]["epoch"])
    if summary:
        metrics["train_runtime_s"] = summary.get("train_runtime")
        metrics["train_samples_per_second"] = summary.get("train_samples_per_second")
    verdict = curve.judge(records)
    if verdict:
        metrics["eval_curve"] = verdict
    return metrics
