"""One folder per run, holding everything needed to understand and reproduce it.

    <runs_root>/<run_id>/
      config.yml        the axolotl config exactly as trained
      composed.yaml     the whole composed config (runner keys too)
      job.json          overrides, group choices, compute spec
      provenance.json   git commit + dirty flag, data sha256, package versions, config hash
      status.json       per-stage state with timestamps and log paths
      logs/<stage>.log  each stage's full output
      outputs/          adapter and checkpoints (axolotl's output_dir); outputs/merged: merged model (if merged)
      metrics.json      final figures
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import secrets
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner import provenance
from runner.plan import Job
from runner.records import read_json, write_json, write_yaml
from runner.settings import STAGES


def records(job: Job) -> dict[str, Any]:
    """Everything a new run folder holds, as plain data: the axolotl config exactly as trained, the whole
    composed config, the job (overrides, choices, compute), provenance and the initial status."""
    run_id = job.config["run_id"]
    axolotl_config = job.axolotl_config
    enabled = job.config.get("stages", {})
    data = {name: dataclasses.asdict(f) for name, f in job.data.items()}
    return {
        "config.yml": axolotl_config,
        "composed.yaml": job.config,
        "job.json": {"run_id": run_id, "created": now(), "overrides": job.overrides, "choices": job.choices,
                     "compute": dataclasses.asdict(job.compute), "objective": job.config.get("objective"),
                     "launch": job.launch or {}, "cache_key": job.cache_key,
                     "gpu_choice": job.composed.gpu_choice.to_json() if job.composed.gpu_choice else None},
        "provenance.json": provenance.collect(axolotl_config, data, job.composed.config_sources, job.choices),
        "status.json": {"run_id": run_id, "state": "pending",
                        "stages": {s: {"state": "pending" if enabled.get(s, True) else "skipped"} for s in STAGES}},
    }


def open_run(job: Job) -> tuple[Job, RunFolder]:
    """The one place a run gets its id and folder, whatever the backend: the job resolved for it, and the
    folder with its records (a Modal run's copy on the Volume is written from the same records)."""
    run_id = new_run_id(job.choices, job.config.get("run_name"))
    job = job.for_run(run_id)
    return job, RunFolder.create(job)


def earlier_attempt(job: Job) -> RunFolder | None:
    """The run folder this very job made when it started before, or None. A Slurm job (or submitit's local
    one) that was preempted and requeued starts again with the same job id, sweep and job number: its run
    goes on in that folder, from its first unfinished stage and its last checkpoint, not in a new one."""
    launch = job.launch or {}
    if not launch.get("job_id") or not launch.get("sweep_dir"):
        return None
    same = ("sweep_dir", "job_num", "job_id")
    for path in sorted(Path(job.config["run_dir"]).parent.glob("*/job.json")):
        earlier = read_json(path, {}).get("launch") or {}
        if all(earlier.get(key) == launch.get(key) for key in same):
            return RunFolder(path.parent)
    return None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_issued_run_ids: set[str] = set()


def new_run_id(choices: dict[str, str | None], run_name: str | None = None) -> str:
    """Sortable by creation time, readable, unique: 20261127-194501-tiny-lora-3fa2."""
    while True:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        parts = [stamp, choices.get("model") or "model", choices.get("adapter") or "full", secrets.token_hex(2)]
        if run_name:
            parts.append("".join(c if c.isalnum() or c in "-_." else "-" for c in str(run_name)))
        run_id = "-".join(parts)
        # a sweep names dozens of jobs within one second: 4 hex digits alone collide ~2 % of the time at 50
        if run_id not in _issued_run_ids:
            _issued_run_ids.add(run_id)
            return run_id


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.yml"

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"

    @property
    def merged(self) -> Path:
        return self.outputs / "merged"

    def set_aside_incomplete_checkpoints(self) -> list[str]:
        """A run killed while saving leaves `checkpoint-N/` without its trainer state or weights (axolotl
        writes tokens_state.json there before the trainer saves), and axolotl's auto-resume would pick it
        and fail. Such folders become `incomplete-checkpoint-N/`: train resumes from the last whole one."""
        moved = []
        for checkpoint in sorted(self.outputs.glob("checkpoint-*")):
            whole = _json_whole(checkpoint / "trainer_state.json") and any(checkpoint.glob("*.safetensors"))
            if checkpoint.is_dir() and not whole:
                checkpoint.rename(checkpoint.with_name(f"incomplete-{checkpoint.name}"))
                moved.append(checkpoint.name)
        return moved

    def unfinished_stages(self) -> tuple[str, ...]:
        """The stages an earlier attempt did not finish, in order: where a resumed run starts."""
        stages = self.status().get("stages", {})
        return tuple(s for s in STAGES if stages.get(s, {}).get("state") not in ("succeeded", "skipped"))

    def resume_point(self, stages: tuple[str, ...]) -> str:
        """Where a resumed run starts, in words: its first stage, and the checkpoint train starts from (the
        incomplete ones set aside first, as the train stage would)."""
        if not stages:
            return "nothing left to run"
        where = f"stage {stages[0]}"
        if "train" in stages:
            for name in self.set_aside_incomplete_checkpoints():
                print(f"set aside {name}: the run stopped while it was being written", file=sys.stderr)
            checkpoints = sorted(self.outputs.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
            if checkpoints:
                where += f", train from {checkpoints[-1].name}"
        return where

    def log_file(self, stage: str) -> Path:
        return self.path / "logs" / f"{stage}.log"

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, job: Job) -> RunFolder:
        """Make the folder and write the job's records. `job` must be resolved for its run id."""
        return cls.write(Path(job.config["run_dir"]), records(job))

    @classmethod
    def write(cls, path: Path, run_records: dict[str, Any]) -> RunFolder:
        """A new run folder holding `run_records` (file name → data); a Modal container writes the records
        its launcher made, so every backend's folders are made here, from the same records."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()  # exclusive: two runs never share a folder
        (path / "logs").mkdir()
        for name, data in run_records.items():
            (write_yaml if name.endswith((".yml", ".yaml")) else write_json)(path / name, data)
        return cls(path)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return read_json(self.path / "status.json", {"state": "unknown", "stages": {}})

    def set_stage(self, stage: str, state: str, **extra: Any) -> None:
        status = self.status()
        entry = status["stages"].setdefault(stage, {})
        entry["state"] = state
        if state == "running":
            for stale in ("ended", "error", "returncode", "reason"):   # left by an earlier attempt
                entry.pop(stale, None)
            entry["started"] = now()
            entry["started_at"] = round(time.time(), 3)   # precise: records of the stage are timed from it
            entry["log"] = str(self.log_file(stage).relative_to(self.path))
            status["state"] = "running"
            status["process"] = {"pid": os.getpid(), "host": platform.node(), "start": process_start(os.getpid())}
        elif state in ("succeeded", "failed", "skipped", "interrupted"):
            entry["ended"] = now()
            entry["ended_at"] = round(time.time(), 3)
        entry.update(extra)
        write_json(self.path / "status.json", status)

    def note_stage(self, stage: str, **extra: Any) -> None:
        """Add facts to a stage's entry (the GPU it got, ...) without changing its state."""
        status = self.status()
        status["stages"].setdefault(stage, {}).update(extra)
        write_json(self.path / "status.json", status)

    def set_state(self, state: str, **extra: Any) -> None:
        status = self.status()
        status["state"] = state
        if state in ("running", "succeeded"):   # what an earlier attempt left (a resumed run that now succeeds)
            for stale in ("failed_stage", "interrupted_stage", "error", "signal"):
                status.pop(stale, None)
        status.update(extra)
        if state in ("succeeded", "failed", "interrupted"):
            status["ended"] = now()
        write_json(self.path / "status.json", status)

    # -- metrics --------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / "metrics.json", {})

    def update_metrics(self, **values: Any) -> None:
        metrics = self.metrics()
        metrics.update(values)
        write_json(self.path / "metrics.json", metrics)

    def composed(self) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.path / "composed.yaml").read_text())


# A running stage's runner process touches <run>/heartbeat.json this often; a run recorded as running on
# another host whose heartbeat is older than HEARTBEAT_STALE_S shows as `died` (runner/runs/again.py).
HEARTBEAT_S = 60.0
HEARTBEAT_STALE_S = 600.0


class Heartbeat:
    """While a stage runs: {"at", "host", "pid"} written to <run>/heartbeat.json every HEARTBEAT_S seconds,
    from a thread of the runner process, so that a run on another host can be told from a dead one."""

    def __init__(self, folder: RunFolder, every: float | None = None):
        import threading

        self.path, self.every = folder.path / "heartbeat.json", every or HEARTBEAT_S
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _write(self) -> None:
        write_json(self.path, {"at": round(time.time(), 1), "host": platform.node(), "pid": os.getpid()})

    def _beat(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self._write()
            except OSError:   # a full or gone disk: the stage itself will say so
                pass

    def __enter__(self) -> Heartbeat:
        self._write()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)


def heartbeat_at(path: Path) -> float | None:
    """When the run's runner process last said it was alive (None: never recorded)."""
    value = read_json(path / "heartbeat.json", {}).get("at")
    return float(value) if isinstance(value, (int, float)) else None


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell it from a later process given
    the same pid; None where /proc does not say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])   # field 22 of stat(5); fields[0] here is field 3
    except (OSError, IndexError, ValueError):
        return None


def _json_whole(path: Path) -> bool:
    """The trainer writes trainer_state.json last: present and readable, the checkpoint is whole."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True
