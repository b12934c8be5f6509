"""Where planned jobs run, behind one call: `run_jobs(jobs) -> [Outcome]`.

    local   this machine: one after another on the CPU, side by side on its GPUs (runner/backends/local.py)
    modal   Modal functions, side by side, each job on its own GPUs (runner/backends/modal_launcher.py)
    slurm   a Slurm job per job (runner/launcher.py submits; on the node its stages run as `local`)

Each job was placed when it was planned (runner/backends/placement.py: `backend=auto` decides per job).
Every backend makes run folders the same way (runner/runfolder.py) and prints the same summaries; the
Hydra launchers in runner/launcher.py call this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.backends.outcome import Outcome
from runner.errors import UserError

if TYPE_CHECKING:
    from runner.plan import Job


__all__ = ["Outcome", "check_one_backend", "dry_run", "exit_code", "run_jobs"]


def exit_code(outcomes: list[Outcome]) -> int:
    return 1 if any(o.state == "failed" for o in outcomes) else 0


def check_one_backend(jobs: list[Job]) -> None:
    if len({job.placement.backend for job in jobs}) > 1:
        raise UserError("one sweep cannot mix backends (backend=auto placed some jobs here and some on Modal): "
                        "sweep them separately, or set backend=local or backend=modal")


def dry_run(jobs: list[Job]) -> int:
    from runner.report import dry_run_text

    print("\n".join(dry_run_text(job, i, len(jobs)) for i, job in enumerate(jobs, start=1)), end="")
    return 0


def run_jobs(jobs: list[Job]) -> list[Outcome]:
    """Run every job where it was placed (dry runs are printed instead, by the caller)."""
    check_one_backend(jobs)
    if jobs[0].placement.backend == "modal":
        from runner.backends import modal_launcher

        return modal_launcher.run_jobs(jobs)
    from runner.backends import local   # local, and a Slurm job on its node

    return local.run_jobs(jobs)
