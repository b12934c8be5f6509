"""Run a run folder's stages in order: prepare → preprocess → train → merge → eval.

Backend-agnostic: the local backend calls run_stages() on this machine; the Modal backend calls
run_stage() inside each stage's Modal function, over the same run folder on a Volume.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runner import prepared, tracking
from runner.cache import FOLD, REUSE, preprocess_decision
from runner.records import write_json
from runner.runfolder import Heartbeat, RunFolder
from runner.settings import STAGES
from runner.stages import axolotl_stages, evaluate, prepare, stage_env
from runner.stages.logged import Standby, run_logged

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
    state: str   # succeeded | skipped | reused


def run_stage(folder: RunFolder, stage: str, config: dict[str, Any] | None = None,
              env: dict[str, str] | None = None, label: str | None = None,
              standby: Standby | None = None, on_record: Callable[[], None] | None = None) -> StageResult:
    """One stage of a run. `env` adds to the stage's environment (CUDA_VISIBLE_DEVICES: the GPUs the local
    launcher gave the job); `label` prefixes its progress lines when jobs run side by side; `standby`: the
    stage's process, started earlier and waiting (run_stages)."""
    config = config or folder.composed()
    if not config.get("stages", {}).get(stage, True):
        folder.set_stage(stage, "skipped", reason="turned off (stages." + stage + "=false)")
        return StageResult(stage, "skipped")
    cmd = COMMANDS[stage](folder.path, config)
    if cmd is None:
        folder.set_stage(stage, "skipped", reason="nothing to do for this config")
        return StageResult(stage, "skipped")
    if stage == "preprocess":
        reused = prepared.prepared_before(folder)
        if preprocess_decision(tokens_ready=reused is not None) == REUSE:
            folder.set_stage(stage, "succeeded", reused=reused["run_id"],
                             reason=f"reused the data tokenised by run {reused['run_id']}")
            print(f"  {label + ' ' if label else ''}{stage:<10}  reused: tokenised by run {reused['run_id']} "
                  f"({reused['path']})", file=sys.stderr, flush=True)
            return StageResult(stage, "reused")
    if stage == "train":   # a retried or resumed train must not pick a checkpoint cut off by a kill
        for name in folder.set_aside_incomplete_checkpoints():
            print(f"  set aside {name}: the run stopped while it was being written", file=sys.stderr, flush=True)
    short = _disk_shortfall(folder, config) if stage == "train" else None   # the merge asked for included
    if short:
        folder.set_stage(stage, "failed", error=short)
        folder.set_state("failed", failed_stage=stage, error=short)
        raise StageFailed(stage, 1, [], folder.log_file(stage), short)
    folder.set_stage(stage, "running")   # with this process's id and host: `runs resume` checks it has gone
    try:
        tracker_vars = tracking.before_stage(folder, config, stage)
    except Exception as e:  # noqa: BLE001 - the tracker's own error, in one line, before the GPU is paid for
        reason = f"could not open the {tracking.tracker(config)} run: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        folder.set_stage(stage, "failed", error=reason)
        folder.set_state("failed", failed_stage=stage, error=reason)
        raise StageFailed(stage, 1, [], folder.log_file(stage), reason) from e
    stage_vars = {**_stage_vars(config, stage, env), **tracker_vars}
    try:
        with Heartbeat(folder):   # a run on another host is told from a dead one by it (`runs list`: died)
            output = run_logged(standby.cmd if standby else cmd, folder.log_file(stage), stage, env=stage_vars,
                                cwd=folder.path, label=label, standby=standby, on_record=on_record)
    except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM, SIGHUP: interrupted, not running; `runs resume` continues it
        how = {"signal": e.signal_name} if getattr(e, "signal_name", None) else {}
        if stage == "train":   # the steps done so far: a resumed train's history starts after them
            _keep_train_records(folder, getattr(e, "records", []))
        folder.set_stage(stage, "interrupted", **how)
        folder.set_state("interrupted", interrupted_stage=stage, **how)
        raise
    if stage == "train":
        _keep_train_records(folder, output.records)
    if output.returncode != 0:
        reason = output.reason
        error = {"error": reason} if reason else {}   # `runs show RUN` prints a stage's error
        folder.set_stage(stage, "failed", returncode=output.returncode, **error)
        folder.set_state("failed", failed_stage=stage, **error)
        tracking.after_stage(folder, config, stage, "failed")
        raise StageFailed(stage, output.returncode, output.tail, folder.log_file(stage), reason)
    folder.set_stage(stage, "succeeded")
    if stage == "preprocess":
        prepared.record_prepared(folder)
    if stage == "eval":
        close_curve(folder)
    tracking.after_stage(folder, config, stage, "succeeded")
    return StageResult(stage, "succeeded")


def _stage_vars(config: dict[str, Any], stage: str, env: dict[str, str] | None) -> dict[str, str]:
    return {**stage_env(config, offline=stage != "prepare" or config["model_spec"].get("build") == "tiny"), **(env or {})}


GIB = 1024 ** 3


def disk_needed(config: dict[str, Any]) -> float:
    """Bytes a train stage writes under its run folder (with the merge it is asked for): a full fine-tune's
    16-bit weights at the end, and one checkpoint of weights plus AdamW's moments (6 bytes a parameter)
    kept while saving; an adapter's files are small (LoRA: a few hundred MB at most) and count 1 GiB."""
    params = float(config["model_spec"]["params_b"]) * 1e9
    saves = config.get("save_strategy") != "no" and (config.get("saves_per_epoch") or config.get("save_steps"))
    written = 2 * params + (6 * params if saves else 0) if not config.get("adapter") else GIB
    if (config.get("stages") or {}).get("merge") and config.get("adapter"):
        written += 2 * params
    return written


def _disk_shortfall(folder: RunFolder, config: dict[str, Any]) -> str | None:
    """Why the stage would run out of disk before it is done (a 7B full fine-tune trained 2.6 min on an H100
    and then failed writing its 13.5 GB model), or None."""
    import shutil

    needed, free = disk_needed(config), shutil.disk_usage(folder.path).free
    if free >= needed:
        return None
    return (f"not enough disk for the run's weights and checkpoints: ~{needed / GIB:.1f} GiB needed, "
            f"{free / GIB:.1f} GiB free under {folder.path.parent} ({(needed - free) / GIB:.1f} GiB short)")


def process_started_at() -> float | None:
    """When this process started (the kernel's record, to ~20 ms), where /proc tells; else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])   # field 22: start time, in ticks since boot
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return round(time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


_first_job = [True]   # the process's first job is timed from the process's start


def _startup(folder: RunFolder, records: list[dict]) -> dict[str, Any]:
    """Seconds from the runner's start (`python -m runner`, for the first job of its process) or else the
    attempt's start (its first stage) to the first optimizer step (the trainer logs every step), and the
    train process's own part of that: imports, tokenising, loading the model."""
    first = next((r["wall_s"] for r in records if isinstance(r.get("loss"), float) and "wall_s" in r), None)
    status = folder.status()
    train_started = status["stages"].get("train", {}).get("started_at")
    if first is None or train_started is None:
        return {}
    startup = {"train_process_s": first}
    start = status.get("process_started_at") or status.get("started_at")
    if start:
        startup["first_step_s"] = round(train_started + first - start, 2)
        startup["from"] = "runner process" if status.get("process_started_at") else "run attempt"
    return {"startup": startup}


def _keep_train_records(folder: RunFolder, records: list[dict]) -> None:
    """The trainer's records into logs/train_history.json (after an earlier attempt's) and metrics.json."""
    if records:
        history = _after_earlier_attempts(folder, records)
        write_json(folder.path / "logs" / "train_history.json", history)
        folder.update_metrics(**axolotl_stages.train_metrics(history), **_startup(folder, records))
        from runner import prediction   # gpu=auto's prediction beside the trainer's figures
        from runner.records import read_json

        folder.update_metrics(**prediction.compare(read_json(folder.path / "job.json", {}), history))


def close_curve(folder: RunFolder) -> None:
    """The eval stage's tuned loss as the held-out curve's last point, where the trainer did not evaluate at
    its last step (runner/integrations/last_evaluation.py): the same records, the trained weights."""
    from runner.records import read_json

    history = read_json(folder.path / "logs" / "train_history.json", [])
    tuned = ((folder.metrics().get("eval") or {}).get("tuned") or {}).get("eval_loss")
    summary = next((r for r in reversed(history) if "train_runtime" in r), {})
    end = summary.get("epoch")
    held = [r for r in history if "eval_loss" in r]
    if not isinstance(tuned, (int, float)) or not isinstance(end, (int, float)) or not held or held[-1].get("epoch", 0) >= end:
        return   # no curve, no tuned loss, or the trainer scored its last step itself
    history = [r for r in history if "train_runtime" not in r] + [
        {"epoch": end, "eval_loss": float(tuned), "step": summary.get("step"), "source": "eval stage"},
        *[r for r in history if "train_runtime" in r]]
    write_json(folder.path / "logs" / "train_history.json", history)
    folder.update_metrics(**axolotl_stages.train_metrics(history))


def _after_earlier_attempts(folder: RunFolder, records: list[dict]) -> list[dict]:
    """A resumed train logs from its checkpoint on: keep what the earlier attempts logged before its first
    step (it may evaluate first, at the checkpoint's epoch), less their end-of-training summaries."""
    from runner.records import read_json

    earlier = read_json(folder.path / "logs" / "train_history.json", [])
    start = next((r["epoch"] for r in records if "loss" in r and isinstance(r.get("epoch"), (int, float))), math.inf)
    return [r for r in earlier if isinstance(r.get("epoch"), (int, float)) and r["epoch"] < start
            and "train_runtime" not in r] + records


def run_stages(folder: RunFolder, stages: tuple[str, ...] = STAGES, env: dict[str, str] | None = None,
               label: str | None = None) -> None:
    """The stages in order, here. A one-process train tokenises itself (axolotl's train prepares data
    that is not prepared yet, by the same code and into the same folder as its preprocess command): then
    the preprocess stage is folded into it, and the run pays one process start-up less."""
    config = folder.composed()
    # start-up is timed from the process's start for its first job, else from this attempt's start
    process_start = process_started_at() if _first_job[0] else None
    _first_job[0] = False
    folder.set_state("running", started_at=round(time.time(), 3), process_started_at=process_start)
    standby: Standby | None = None
    tokenising = prepared.TokenisingLock(folder, label)
    try:
        for stage in stages:
            if stage == "preprocess" and (config.get("stages") or {}).get("preprocess", True):
                tokenising.acquire()   # another job tokenising this data key: wait for its tokens
            if stage == "preprocess" and "train" in stages and _folds_into_train(folder, config):
                folder.set_stage(stage, "skipped", folded="train",
                                 reason="tokenised in the train stage's process (one process start-up less)"
                                 + (f"; waited for run {tokenising.waited_for} to tokenise the same data"
                                    if tokenising.waited_for else ""))
                print(f"  {label + ' ' if label else ''}{stage:<10}  in the train stage's process", file=sys.stderr,
                      flush=True)
                continue
            if stage == "train" and "eval" in stages and _eval_on_standby(config):
                standby = Standby(evaluate.command(folder.path, config, standby=True),
                                  env=_stage_vars(config, "eval", env), cwd=folder.path)
            # the trainer's first logged step: the tokens are on disk, another job may load them
            run_stage(folder, stage, config, env, label, standby=standby if stage == "eval" else None,
                      on_record=tokenising.release if stage == "train" else None)
            if stage in ("preprocess", "train"):
                tokenising.release()
            if stage == "train" and folder.status()["stages"].get("preprocess", {}).get("folded") == "train":
                prepared.record_prepared(folder, "train")
    except KeyboardInterrupt as e:   # between stages: the run is interrupted all the same
        if folder.status().get("state") == "running":
            how = {"signal": e.signal_name} if getattr(e, "signal_name", None) else {}
            folder.set_state("interrupted", **how)
        raise
    finally:
        tokenising.release()
        if standby is not None:   # a failed or interrupted train, or eval turned off: it exits unused
            standby.discard()
    folder.set_state("succeeded")


def _eval_on_standby(config: dict[str, Any]) -> bool:
    """Start the eval stage's process with the train stage on a GPU job: its imports (torch, transformers,
    peft: 15-20 s on the H200 machine, bench/RESULTS.md §11) overlap training, which leaves the CPU's other
    cores idle. Not on a CPU job, where they would compete with training for the same cores."""
    return bool((config.get("stages") or {}).get("eval", True)) and config["gpu"].get("modal") is not None


def _folds_into_train(folder: RunFolder, config: dict[str, Any]) -> bool:
    """Preprocess and train both on, train in one process (N processes preprocess once, before they start),
    and no earlier run's tokens to reuse (then the preprocess stage reports the reuse)."""
    stages = config.get("stages") or {}
    one_process = bool(stages.get("preprocess", True) and stages.get("train", True) and int(config["gpu"]["count"]) == 1)
    if not one_process:   # the preprocess stage decides for itself (run_stage): reuse or run
        return False
    return preprocess_decision(tokens_ready=prepared.prepared_before(folder) is not None, folds_into_train=True) == FOLD
