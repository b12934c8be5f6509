"""Where planned jobs run, behind one call: `run_jobs(jobs)`.

    local   this machine, one job after another (runner/backends/local.py)
    modal   Modal functions, side by side, each job on its own GPUs (runner/backends/modal_launcher.py)

Each job was placed when it was planned (runner/backends/placement.py: `backend=auto` decides per job).
Both backends make run folders the same way (runner/runfolder.py) and print the same summaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import UserError

if TYPE_CHECKING:
    from runner.plan import Job


def check_one_backend(jobs: list[Job]) -> None:
    if len({job.placement.backend for job in jobs}) > 1:
        raise UserError("one sweep cannot mix backends (backend=auto placed some jobs here and some on Modal): "
                        "sweep them separately, or set backend=local or backend=modal")


def dry_run(jobs: list[Job]) -> int:
    from runner.report import dry_run_text

    print("\n".join(dry_run_text(job, i, len(jobs)) for i, job in enumerate(jobs, start=1)), end="")
    return 0


def run_jobs(jobs: list[Job]) -> int:
    """Run every job where it was placed; the exit code is 1 if any failed."""
    if all(job.config.get("dry_run") for job in jobs):
        return dry_run(jobs)
    check_one_backend(jobs)
    if jobs[0].placement.backend == "local":
        from runner.backends import local

        return local.run_jobs(jobs)
    from runner.backends import modal_launcher

    return modal_launcher.run_jobs(jobs)
