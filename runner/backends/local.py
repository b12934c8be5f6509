"""The local backend: every job's stages on this machine.

On the CPU, jobs run one after another. On a machine with GPUs, jobs that need fewer GPUs than it has run
side by side, each on its own devices (CUDA_VISIBLE_DEVICES for all of its stage processes): a job waits
until enough devices are free, never shares one, and gives them back when it ends. Jobs without GPUs
still run one at a time.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from runner import report
from runner.backends.outcome import Outcome
from runner.backends.placement import local_gpus
from runner.pipeline import StageFailed, run_stages
from runner.plan import Job
from runner.runfolder import earlier_attempt, open_run
from runner.settings import STAGES


class DevicePool:
    """The machine's GPU indices; `take(n)` blocks until n are free and hands them out exclusively."""

    def __init__(self, devices: list[int]):
        self.total = len(devices)
        self.free = sorted(devices)
        self.changed = threading.Condition()

    def take(self, count: int) -> list[int]:
        if count > self.total:
            raise ValueError(f"needs {count} GPUs, this machine has {self.total}")
        with self.changed:
            self.changed.wait_for(lambda: len(self.free) >= count)
            taken, self.free = self.free[:count], self.free[count:]
            return taken

    def give(self, devices: list[int]) -> None:
        with self.changed:
            self.free = sorted(self.free + devices)
            self.changed.notify_all()


def gpus_needed(job: Job) -> int:
    return job.compute.processes if job.compute.gpu_string else 0


def run_jobs(jobs: list[Job]) -> list[Outcome]:
    """Run every job; a failed job does not stop the others."""
    machine = [gpu.index for gpu in local_gpus()]
    if len(jobs) > 1 and machine and any(gpus_needed(job) for job in jobs):
        return run_side_by_side(jobs, DevicePool(machine))
    return [run_job(job, index, len(jobs)) for index, job in enumerate(jobs, start=1)]


def run_side_by_side(jobs: list[Job], pool: DevicePool) -> list[Outcome]:
    one_cpu_job = threading.Lock()

    def run(index: int, job: Job) -> Outcome:
        count = gpus_needed(job)
        if not count:
            with one_cpu_job:
                return run_job(job, index, len(jobs), label=f"[{index}/{len(jobs)}]")
        try:
            devices = pool.take(count)
        except ValueError as e:
            print(f"error: job {index}: {e}", file=sys.stderr)
            return Outcome(None, "failed", {}, job.overrides)
        try:
            return run_job(job, index, len(jobs), devices=devices, label=f"[{index}/{len(jobs)}]")
        finally:
            pool.give(devices)

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="job") as threads:
        return list(threads.map(run, range(1, len(jobs) + 1), jobs))


def run_job(job: Job, index: int, total: int, devices: list[int] | None = None, label: str | None = None) -> Outcome:
    env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))} if devices is not None else None
    if env and job.launch is not None:
        job = replace(job, launch={**job.launch, "devices": env["CUDA_VISIBLE_DEVICES"]})
    where = f"  GPUs {env['CUDA_VISIBLE_DEVICES']}" if env else ""
    folder = earlier_attempt(job)   # a requeued Slurm job: its run goes on where it stopped
    if folder is None:
        job, folder = open_run(job)
        stages, again = STAGES, ""
    else:
        stages = folder.unfinished_stages()
        folder.set_state(folder.status().get("state", "unknown"), requeued=folder.status().get("requeued", 0) + 1)
        again = f"\n  started again (job {job.launch['job_id']}, {folder.status().get('state')}): {folder.resume_point(stages)}"
    run_id = folder.run_id
    print(f"[{index}/{total}] run {run_id}  {' '.join(job.overrides) or '(defaults)'}{where}\n"
          f"  {job.compute.describe()}{again}", file=sys.stderr)
    started = time.monotonic()
    state = summary_state = "succeeded"
    try:
        if stages:
            run_stages(folder, stages, env=env, label=label)
    except StageFailed as e:
        state = summary_state = f"failed ({e.stage})"
        if e.reason:  # the stage said what to do: that line alone, the details stay in its log
            summary_state = f"{state}: {e.reason}"
            print(f"error: run {run_id}: {e.stage}: {e.reason}", file=sys.stderr)
        else:
            print(f"error: stage '{e.stage}' failed (exit {e.returncode}); last lines of {e.log}:", file=sys.stderr)
            print("\n".join("    " + line for line in e.tail), file=sys.stderr)
    metrics = folder.metrics()
    print(report.run_summary(folder.path, summary_state, time.monotonic() - started, metrics,
                             adapter=bool(job.config.get("adapter"))))
    return Outcome(folder.path, "succeeded" if state == "succeeded" else "failed", metrics, job.overrides)
