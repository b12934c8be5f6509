"""Every backend by name, and what the rest of the runner asks of one, as properties and methods: this is
the only module that tells backends apart by name (tests/test_layout.py holds the others to it).

    local   this machine: the stages run here (runner/backends/local.py)
    modal   Modal's containers from the project's image (runner/backends/modal_launcher.py)
    slurm   a Slurm job per job, submitted by Hydra's submitit launcher (runner/launcher.py); on the node
            the stages run as `local` does

`backend=auto` is not a backend: runner/backends/placement.py picks one of these per job. Adding a backend
is a class here naming its own module (run_jobs), that module, conf/backend/<name>.yaml selecting its
launcher, and its name among runner/schema/backend.py's choices (tests/test_layout.py checks they agree).
Nothing heavy is imported here: the dry run and the stages' containers read these properties.
"""

from __future__ import annotations

from typing import Any

# Backends' own modules import what imports this one (plan, report): this module names them, and
# runner/backends/__init__.py imports the one a job needs, so the layers point one way.
Job = Any   # runner.plan.Job


class Backend:
    """The defaults: stages on this machine's file system, no platform limits, no bound on time."""

    name = ""
    runs_jobs = "runner.backends.local"   # the module whose run_jobs(jobs) -> [Outcome] runs them
    remote = False          # stages run on another platform's machines: they see neither this file system
                            # (local base_model folders, weights) nor this machine's packages (their image has them)
    needs_gpu = False       # refuses gpu=cpu
    bounds_run_time = False  # backend.timeout_h bounds each run (so its cost)
    sweeps_only = False     # Hydra launches it only in a sweep (-m): one job is a sweep of one
    runs_here = False       # the stages run on this machine, on its own devices (gpu=auto: at no cost)

    def check_limits(self, config: dict[str, Any]) -> None:
        """The platform's own limits for one job, in the plan rather than at launch."""

    def job_bound(self, config: dict[str, Any]) -> Any:
        """A job's worst case (time, cost) where the platform bounds it, or None."""
        return None

    def sweep_bound(self, configs: list[dict[str, Any]]) -> str | None:
        """The worst case of a sweep's jobs together, in words (a UserError where it cannot fit), or None."""
        return None

    def dry_run_lines(self, job: Job) -> list[str]:
        """What the dry run says about this backend for one job, after its compute line."""
        return []

    def shown_job(self, job: Job) -> Job:
        """The job as its stages will see it (the dry run prints its axolotl config): here, as planned."""
        return job

    def where(self, compute: dict[str, Any]) -> str | None:
        """Where a job ran, for the sweep table, when the launch record (host, devices) does not say it."""
        return None


class Local(Backend):
    name = "local"
    runs_here = True


class Slurm(Backend):
    name = "slurm"   # submitted by runner/launcher.py; on the node its job runs as `local` does
    sweeps_only = True


class Modal(Backend):
    name = "modal"
    runs_jobs = "runner.backends.modal_launcher"
    remote = needs_gpu = bounds_run_time = True

    def check_limits(self, config: dict[str, Any]) -> None:
        """24 h a call, 10 retries, its GPU types and counts for every stage, positive parallelism, and the
        job's worst case within the sweep function that runs it."""
        from runner.backends import modal_bounds, modal_settings

        modal_bounds.check_job(config)   # modal_settings.stage_options first: each stage's own limits
        modal_settings.max_parallel(config)

    def job_bound(self, config: dict[str, Any]) -> Any:
        from runner.backends import modal_bounds

        return modal_bounds.job_bound(config)

    def sweep_bound(self, configs: list[dict[str, Any]]) -> str | None:
        from runner.backends import modal_bounds

        return modal_bounds.check_sweep(configs).describe()

    def dry_run_lines(self, job: Job) -> list[str]:
        from runner.stack import stack

        from runner.backends.modal_paths import container_view

        return [f"# worst case (Modal): {job.compute.worst_case}", f"# stack (every Modal image): {stack().summary()}",
                *container_view(job)]

    def shown_job(self, job: Job) -> Job:
        """The containers' view: paths on the Volumes, not this machine's."""
        from runner.backends.modal_paths import DRY_RUN_ID, container_job

        return container_job(job, DRY_RUN_ID)

    def where(self, compute: dict[str, Any]) -> str | None:
        return f"Modal {compute.get('gpu_string')}"


BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (Local(), Modal(), Slurm())}


def backend_named(name: str | None) -> Backend:
    """The backend of this name; a record's unknown or missing name (an older run) gets the defaults."""
    return BACKENDS.get(str(name), Backend())
