"""Where planned jobs run, behind one call: `run_jobs(jobs) -> [Outcome]`.

    local   this machine: one after another on the CPU, side by side on its GPUs (runner/backends/local.py)
    modal   Modal functions, side by side, each job on its own GPUs (runner/backends/modal_launcher.py)
    slurm   a Slurm job per job (runner/launcher.py submits; on the node its stages run as `local`)

Each job was placed when it was planned (runner/backends/placement.py: `backend=auto` decides per job);
what each backend is and does is looked up by its name in runner/backends/registry.py.
Every backend makes run folders the same way (runner/runfolder.py) and prints the same summaries; the
Hydra launchers in runner/launcher.py call this.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.backends.outcome import Outcome
from runner.backends.registry import backend_named
from runner.errors import UserError

if TYPE_CHECKING:
    from runner.plan import Job


__all__ = ["Outcome", "check_one_backend", "check_sweep", "dry_run", "exit_code", "run_jobs"]


def exit_code(outcomes: list[Outcome]) -> int:
    return 1 if any(o.state == "failed" for o in outcomes) else 0


def check_one_backend(jobs: list[Job]) -> None:
    if len({job.placement.backend for job in jobs}) > 1:
        raise UserError("one sweep cannot mix backends (backend=auto placed some jobs here and some on Modal): "
                        "sweep them separately, or set backend=local or backend=modal")


def check_sweep(jobs: list[Job]) -> None:
    """A sweep's jobs together, before anything is created: one backend; on Modal, a worst case that fits
    the sweep function (runner/backends/modal_bounds.py); a hub model that cannot be downloaded here."""
    from runner.models import hub

    check_one_backend(jobs)
    sweep_bound(jobs)
    for job in jobs:
        if not backend_named(job.placement.backend).remote:
            hub.check_reachable(job.config)


def sweep_bound(jobs: list[Job]) -> str | None:
    """The worst case of the jobs of each backend that bounds one (Modal: the sweep function's 24 h), in
    words (None when none does); a UserError when they cannot fit."""
    by_backend: dict[str, list] = {}
    for job in jobs:
        by_backend.setdefault(job.placement.backend, []).append(job.config)
    bounds = [backend_named(name).sweep_bound(configs) for name, configs in by_backend.items()]
    return "; ".join(bound for bound in bounds if bound) or None


def dry_run(jobs: list[Job]) -> int:
    from runner.report import dry_run_text

    bound = sweep_bound(jobs) if len(jobs) > 1 else None   # one job: its own lines say it
    print("\n".join(dry_run_text(job, i, len(jobs)) for i, job in enumerate(jobs, start=1)), end="")
    if bound:
        print(f"# sweep on Modal: {bound}")
    return 0


def run_jobs(jobs: list[Job]) -> list[Outcome]:
    """Run every job where it was placed, but for those an earlier run already did (runner/cache.py); dry
    runs are printed instead, by the caller."""
    check_sweep(jobs)
    outcomes: dict[int, Outcome] = {}
    todo = []
    for index, job in enumerate(jobs):
        cached = _cached(job, index, len(jobs))
        if cached:
            outcomes[index] = cached
        else:
            todo.append(index)
    if todo:   # one backend (check_sweep); a Slurm job on its node runs as `local` does
        backend = importlib.import_module(backend_named(jobs[0].placement.backend).runs_jobs)
        outcomes.update(zip(todo, backend.run_jobs([jobs[i] for i in todo])))
    return [outcomes[i] for i in range(len(jobs))]


def _cached(job: Job, index: int, total: int) -> Outcome | None:
    """An earlier succeeded run of this very job (same config, data and code), unless rerun=true."""
    import sys
    from pathlib import Path

    from runner.cache import cached_run, job_key
    from runner.records import read_json, write_json

    job.cache_key = job_key(job)
    if job.config.get("rerun"):
        return None
    hit = cached_run(Path(job.config["run_dir"]).parent, job.cache_key)
    if hit is None:
        return None
    print(f"[{index + 1}/{total}] cached: run {hit.name} succeeded with the same config, data and code "
          f"({' '.join(job.overrides) or 'defaults'}); rerun=true runs it again", file=sys.stderr)
    launch = job.launch or {}
    if launch.get("sweep_dir"):   # the sweep's table shows the earlier run in this job's place
        write_json(Path(launch["sweep_dir"]) / "cached" / f"{launch.get('job_num')}.json",
                   {"run_id": hit.name, "job_num": launch.get("job_num"), "overrides": job.overrides,
                    "launcher": launch.get("launcher")})
    return Outcome(hit, "succeeded", read_json(hit / "metrics.json", {}), job.overrides, cached=True)
