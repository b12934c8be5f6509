"""Run a run folder's stages in order: prepare → preprocess → train → merge → eval.

Backend-agnostic: the local backend calls run_stages() on this machine; the Modal backend calls
run_stage() inside each stage's Modal function, over the same run folder on a Volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runner.records import write_json
from runner.runfolder import RunFolder
from runner.settings import STAGES
from runner.stages import axolotl_stages, evaluate, prepare, stage_env
from runner.stages.logged import run_logged

Command = Callable[[Path, dict[str, Any]], "list[str] | None"]

COMMANDS: dict[str, Command] = {
    "prepare": prepare.command,
    "preprocess": axolotl_stages.preprocess_command,
    "train": axolotl_stages.train_command,
    "merge": axolotl_stages.merge_command,
    "eval": evaluate.command,
}


class StageFailed(Exception):
    """A stage process that exited non-zero. `reason` is its own one-line `error: ...` when it gave one
    (then the user sees that line alone); otherwise `tail` shows what happened."""

    def __init__(self, stage: str, returncode: int, tail: list[str], log: Path, reason: str | None = None):
        self.stage, self.returncode, self.tail, self.log, self.reason = stage, returncode, tail, log, reason
        super().__init__(f"stage '{stage}' failed: {reason}" if reason
                         else f"stage '{stage}' failed (exit {returncode}); log: {log}")


@dataclass
class StageResult:
    stage: str
    state: str   # succeeded | skipped


def run_stage(folder: RunFolder, stage: str, config: dict[str, Any] | None = None,
              env: dict[str, str] | None = None, label: str | None = None) -> StageResult:
    """One stage of a run. `env` adds to the stage's environment (CUDA_VISIBLE_DEVICES: the GPUs the local
    launcher gave the job); `label` prefixes its progress lines when jobs run side by side."""
    config = config or folder.composed()
    if not config.get("stages", {}).get(stage, True):
        folder.set_stage(stage, "skipped", reason="turned off (stages." + stage + "=false)")
        return StageResult(stage, "skipped")
    cmd = COMMANDS[stage](folder.path, config)
    if cmd is None:
        folder.set_stage(stage, "skipped", reason="nothing to do for this config")
        return StageResult(stage, "skipped")
    folder.set_stage(stage, "running")
    stage_vars = {**stage_env(config, offline=stage != "prepare" or config["model_spec"].get("build") == "tiny"),
                  **(env or {})}
    output = run_logged(cmd, folder.log_file(stage), stage, env=stage_vars, cwd=folder.path, label=label)
    if stage == "train" and output.records:
        write_json(folder.path / "logs" / "train_history.json", output.records)
        folder.update_metrics(**axolotl_stages.train_metrics(output.records))
    if output.returncode != 0:
        reason = output.reason
        error = {"error": reason} if reason else {}   # `runs show RUN` prints a stage's error
        folder.set_stage(stage, "failed", returncode=output.returncode, **error)
        folder.set_state("failed", failed_stage=stage, **error)
        raise StageFailed(stage, output.returncode, output.tail, folder.log_file(stage), reason)
    folder.set_stage(stage, "succeeded")
    return StageResult(stage, "succeeded")


def run_stages(folder: RunFolder, stages: tuple[str, ...] = STAGES, env: dict[str, str] | None = None,
               label: str | None = None) -> None:
    config = folder.composed()
    for stage in stages:
        run_stage(folder, stage, config, env, label)
    folder.set_state("succeeded")
