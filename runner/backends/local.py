"""The local backend: every job's stages on this machine, one job after another."""

from __future__ import annotations

import sys
import time

from runner import report
from runner.pipeline import StageFailed, run_stages
from runner.plan import Job
from runner.runfolder import open_run


def run_jobs(jobs: list[Job]) -> int:
    """Run every job; a failed job does not stop the sweep. Exit code 1 if any failed."""
    rows, failed = [], 0
    for index, job in enumerate(jobs, start=1):
        job, folder = open_run(job)
        run_id = folder.run_id
        label = " ".join(job.overrides) or "(defaults)"
        print(f"[{index}/{len(jobs)}] run {run_id}  {label}\n  {job.compute.describe()}", file=sys.stderr)
        started = time.monotonic()
        state = summary_state = "succeeded"
        try:
            run_stages(folder)
        except StageFailed as e:
            failed += 1
            state = summary_state = f"failed ({e.stage})"
            if e.reason:  # the stage said what to do: that line alone, the details stay in its log
                summary_state = f"{state}: {e.reason}"   # the sweep table keeps its short status
                print(f"error: run {run_id}: {e.stage}: {e.reason}", file=sys.stderr)
            else:
                print(f"error: stage '{e.stage}' failed (exit {e.returncode}); last lines of {e.log}:", file=sys.stderr)
                print("\n".join("    " + line for line in e.tail), file=sys.stderr)
        elapsed = time.monotonic() - started
        metrics = folder.metrics()
        print(report.run_summary(folder.path, summary_state, elapsed, metrics, adapter=bool(job.config.get("adapter"))))
        rows.append({
            "job": index, "overrides": label, "status": state,
            "loss": (metrics.get("train_loss") or {}).get("last"),
            "eval": report.loss_line(metrics, "eval_loss") or "-",
            "gpu_hours": elapsed / 3600 * job.compute.processes if job.compute.gpu_string else None,
            "cost": None,
        })
    if len(jobs) > 1:
        print("\n" + report.sweep_table(rows))
    return 1 if failed else 0
