"""A sweep's jobs side by side: each job's stages in order, at most `max_parallel` jobs at once.

Runs inside the Modal app's `sweep` function (so a detached sweep carries on after the laptop closes); the
Modal calls arrive as plain callables, so this module never imports modal and tests can drive it.

Shared work is done once: the first job that needs a base model runs `prepare` while later jobs with the
same model wait (no two containers download the same weights into the shared Volume), and the first job
of each tokenised data key (runner/cache.py: prepared_key) tokenises while the others wait and then reuse
its prepared data (axolotl finds it under dataset_prepared_path by the same hash); what a job's
preprocess does is decided as on this machine (runner/cache.py: preprocess_decision). One job's failure never stops another.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from runner.cache import REUSE, preprocess_decision
from runner.settings import STAGES

JobRequest = dict[str, Any]   # one job's plain-data request (not plan.Job), built by modal_launcher.job_request
CreateRun = Callable[[JobRequest], None]
CallStage = Callable[[JobRequest, str, dict[str, str]], Any]   # (job, stage, stages to mark skipped first)


@dataclass
class JobResult:
    index: int
    run_id: str
    state: str = "succeeded"                 # succeeded | failed
    failed_stage: str | None = None
    error: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)   # skips not yet written to the run folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FinishRun = Callable[[JobRequest, JobResult], None]


class SharedStep:
    """Work several jobs need once: the leader does it, the others wait for it to end."""

    def __init__(self, leader: str):
        self.leader = leader
        self.done = threading.Event()
        self.ok = False


def shared_steps(jobs: list[JobRequest]) -> dict[str, dict[str, SharedStep]]:
    """Per stage, group key → its SharedStep; the leader is the group's first job (plan order)."""
    groups: dict[str, dict[str, SharedStep]] = {"prepare": {}, "preprocess": {}}
    for job in jobs:
        for stage, key in (("prepare", job["model_key"]), ("preprocess", job["preprocess_key"])):
            if job["stages"][stage]:
                groups[stage].setdefault(key, SharedStep(job["run_id"]))
    return groups


def run_sweep(jobs: list[JobRequest], max_parallel: int, create: CreateRun, call_stage: CallStage,
              finish: FinishRun, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every job; returns one JobResult dict per job, in plan order."""
    shared = shared_steps(jobs)
    # Jobs start in plan order, so a group's leader has always started before anyone waits for it.
    with ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="job") as pool:
        futures = [pool.submit(run_job, job, len(jobs), shared, create, call_stage, finish, log) for job in jobs]
        return [future.result().to_dict() for future in futures]


def run_job(job: JobRequest, total: int, shared: dict[str, dict[str, SharedStep]], create: CreateRun,
            call_stage: CallStage, finish: FinishRun, log: Callable[[str], None]) -> JobResult:
    result = JobResult(job["index"], job["run_id"])
    tag = f"[{job['index']}/{total}] {job['run_id']}"
    stage = "create"
    try:
        create(job)
        for stage in STAGES:
            if not job["stages"][stage]:
                continue
            step = shared.get(stage, {}).get(job["model_key" if stage == "prepare" else "preprocess_key"])
            leads = step is not None and step.leader == job["run_id"]
            if step is not None and not leads:
                step.done.wait()   # the leader downloads the model, or tokenises the data key (cache.WAIT)
                if stage == "preprocess" and preprocess_decision(tokens_ready=step.ok) == REUSE:
                    result.skipped["preprocess"] = f"prepared data shared with run {step.leader}"
                    log(f"{tag}  preprocess: reusing the prepared data of {step.leader}")
                    continue
            log(f"{tag}  {stage} ...")
            ok = False
            try:
                call_stage(job, stage, dict(result.skipped))
                result.skipped.clear()
                ok = True
            finally:
                if leads:
                    step.ok = ok
                    step.done.set()
            log(f"{tag}  {stage} done")
    except Exception as e:  # noqa: BLE001 - a failed job is reported, the others go on
        result.state, result.failed_stage, result.error = "failed", stage, _one_line(e)
        log(f"{tag}  {stage} FAILED: {result.error}")
    finally:
        # never leave followers waiting on a leader that stopped early
        for steps in shared.values():
            for step in steps.values():
                if step.leader == job["run_id"] and not step.done.is_set():
                    step.done.set()
    try:
        finish(job, result)
    except Exception:  # noqa: BLE001
        log(f"{tag}  could not record the final state:\n{traceback.format_exc()}")
    return result


def _one_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    # a failed stage arrives as a plain RuntimeError whose text already says which stage and why
    if type(e) is RuntimeError and lines:
        return lines[0]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")
