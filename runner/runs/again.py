"""Runs again: `resume` continues a run in its own folder; `rerun` reproduces one in a new folder.

    resume RUN   a failed or interrupted local run (Ctrl-C, a killed process, a machine that went away):
                 from its first stage that did not finish, and its train stage from the latest checkpoint
                 in its outputs (axolotl's auto_resume_from_checkpoints)
    rerun RUN    the same job again from the run's records (its composed config as it was, so a changed
                 experiment file does not change it), warning where the code's commit or the data differ
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from runner.backends.modal_records import modal_record
from runner.errors import UserError
from runner.records import read_json
from runner.runfolder import RunFolder, heartbeat_at


def still_running(status: dict[str, Any]) -> bool:
    """The runner process that last ran a stage of this run is alive, on this host (the same process: a pid
    the system has given to another process since does not count)."""
    from runner.runfolder import process_start

    process = status.get("process") or {}
    if status.get("state") != "running" or process.get("host") != platform.node() or not process.get("pid"):
        return False
    try:
        os.kill(int(process["pid"]), 0)
    except (ProcessLookupError, PermissionError):
        return False
    return process.get("start") is None or process_start(int(process["pid"])) == process["start"]


def running_elsewhere(folder: RunFolder, status: dict[str, Any]) -> bool:
    """Recorded as running on another host, whose runner's heartbeat is recent."""
    process = status.get("process") or {}
    return (status.get("state") == "running" and bool(process.get("pid")) and process.get("host") != platform.node()
            and heartbeat_at(folder.path) is not None and not died(status, heartbeat_at(folder.path)))


def died(status: dict[str, Any], heartbeat: float | None = None) -> bool:
    """Recorded as running by a runner process that is gone (kill -9, a crash, a reboot): on this host, the
    process is not there; on another host (a shared file system, a cluster's node), its heartbeat
    (runfolder.Heartbeat, `heartbeat` = its last time) stopped more than HEARTBEAT_STALE_S ago."""
    from runner.runfolder import HEARTBEAT_STALE_S

    process = status.get("process") or {}
    if status.get("state") != "running" or not process.get("pid"):
        return False
    if process.get("host") == platform.node():
        return not still_running(status)
    return heartbeat is not None and time.time() - heartbeat > HEARTBEAT_STALE_S


def resume(folder: RunFolder) -> int:
    from runner import report
    from runner.pipeline import StageFailed, run_stages

    status = folder.status()
    if modal_record(folder.path):
        raise UserError(f"run {folder.run_id} ran on Modal, where a failed train resumes by itself "
                        "(backend.retries): `python -m runner.runs rerun` starts it again")
    if status.get("state") == "succeeded":
        raise UserError(f"run {folder.run_id} succeeded: nothing to resume")
    if still_running(status):
        raise UserError(f"run {folder.run_id} is still running (process {status['process']['pid']}): nothing to resume")
    if running_elsewhere(folder, status):
        process = status["process"]
        raise UserError(f"run {folder.run_id} is running on {process.get('host')} (process {process.get('pid')}, alive "
                        f"{time.time() - (heartbeat_at(folder.path) or 0):.0f} s ago): resume it there, or once it "
                        f"shows as died")
    stages = folder.unfinished_stages()
    print(f"resuming run {folder.run_id} ({status.get('state')}) at {folder.resume_point(stages)}", file=sys.stderr)
    started, state = time.monotonic(), "succeeded"
    try:
        run_stages(folder, stages)
    except StageFailed as e:
        state = f"failed ({e.stage})" + (f": {e.reason}" if e.reason else "")
        print(f"error: run {folder.run_id}: stage '{e.stage}' failed again; log: {e.log}", file=sys.stderr)
    print(report.run_summary(folder.path, state, time.monotonic() - started, folder.metrics(),
                             adapter=bool(folder.composed().get("adapter"))))
    return 0 if state == "succeeded" else 1


def rerun(folder: RunFolder) -> int:
    """The run's job again, from its records, in a new run folder."""
    from omegaconf import OmegaConf

    from runner import provenance
    from runner.backends import exit_code, run_jobs
    from runner.compose import ComposedJob, setup
    from runner.datacheck import check_data_file
    from runner.plan import plan_composed
    from runner.sweeps import launch_info

    job = read_json(folder.path / "job.json", {})
    recorded = read_json(folder.path / "provenance.json", {})
    composed = folder.composed()
    # the recorded config with its run's id made a variable again: every path and name of the run follows
    text = OmegaConf.to_yaml(OmegaConf.create(composed)).replace(folder.run_id, "${run_id}")
    tree = OmegaConf.create(text)
    tree.run_id = None
    setup()   # the resolvers the recorded config's values may still name
    warnings = []
    now_git = provenance.git_state()
    then_git = recorded.get("git") or {}
    if (now_git.get("commit"), now_git.get("dirty")) != (then_git.get("commit"), then_git.get("dirty")):
        warnings.append(f"code: run {folder.run_id} was made at commit {str(then_git.get('commit'))[:12]}"
                        f"{' (dirty)' if then_git.get('dirty') else ''}, this checkout is at "
                        f"{str(now_git.get('commit'))[:12]}{' (dirty)' if now_git.get('dirty') else ''}")
    dataset = composed.get("dataset") or {}
    for split, key in (("train", "path"), ("test", "test_path")):
        then = ((recorded.get("data") or {}).get(split) or {}).get("sha256")
        if then and dataset.get(key) and Path(dataset[key]).is_file():
            if check_data_file(dataset[key], dataset["format"]).sha256 != then:
                warnings.append(f"data: {dataset[key]} is not the file run {folder.run_id} trained on (sha256 differs)")
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    planned = plan_composed(ComposedJob(overrides=list(job.get("overrides") or []), choices=job.get("choices") or {},
                                        tree=tree))
    planned.config["rerun"] = True   # asked for explicitly: not answered from the cache
    planned.launch = {**launch_info("rerun"), "rerun_of": folder.run_id}
    return exit_code(run_jobs([planned]))
