"""Where a job's files are in the Modal containers (the runs and pretrained Volumes, uploaded data), and what
the dry run says about them. Light: the dry run and the launcher both ask it, nothing here imports Modal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.backends import modal_settings as ms
from runner.compose import DRY_RUN_ID

Job = Any   # runner.plan.Job (which imports the backends' registry, which asks this module)

DATASET_KEYS = {"train": "path", "test": "test_path"}


def data_uploads(job: Job) -> dict[str, str]:
    """Where each of the job's data files goes on the runs Volume (by content, so a sweep uploads each
    file once) → the file here."""
    return {remote_data_path(data): data.path for data in job.data.values()}


def remote_data_path(data: Any) -> str:
    """A data file's path on the runs Volume, named by its content (runner.datacheck.DataFile)."""
    return f"_data/{data.sha256[:16]}/{Path(data.path).name}"


def container_job(job: Job, run_id: str, runs_dir: Path = Path(ms.RUNS_MOUNT),
                  pretrained_dir: Path = Path(ms.PRETRAINED_MOUNT)) -> Job:
    """The job resolved for the containers' paths: run folders on the runs Volume, base models in the
    pretrained Volume's HF cache, data files where data_uploads puts them."""
    return job.for_run(run_id, runs_root=str(runs_dir), cache_dir=str(pretrained_dir),
                       **{f"dataset.{DATASET_KEYS[split]}": str(Path(runs_dir) / remote_data_path(data))
                          for split, data in job.data.items()})


def container_view(job: Job) -> list[str]:
    """What the dry run says the containers will see: Volumes, data, Secrets and each stage's resources."""
    settings = ms.app_settings(job.config)
    data = ", ".join(f"{ms.RUNS_MOUNT}/{path}" for path in data_uploads(job))
    secrets = sorted({name for opts in ms.stage_options(job.config).values() for name in opts.secrets})
    return [f"# containers (Modal): run folder {ms.RUNS_MOUNT}/{DRY_RUN_ID} on Volume {settings.runs_volume!r}, "
            f"base weights in {ms.PRETRAINED_MOUNT} (Volume {settings.pretrained_volume!r}), data uploaded to {data}; "
            f"Secrets: {', '.join(secrets) or 'none'}",
            f"# stages (Modal): {ms.describe_stages(job.config)}"]
