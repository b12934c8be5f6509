"""A Modal run's local copy: the small records pulled back from the runs Volume, and what it cost.

    <local runs_root>/<run_id>/
      modal.json        app, sweep call id, Volume, each stage's Modal resources (written at submission)
      status.json, metrics.json, job.json, composed.yaml, config.yml, provenance.json, logs/
                        copied from the runs Volume; weights and checkpoints stay there

No `import modal` here: the Volume arrives as an object with Modal's `read_file` / `listdir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.records import read_json, stage_seconds, write_json, write_text

SMALL_FILES = ("status.json", "metrics.json", "job.json", "composed.yaml", "config.yml", "provenance.json")
MODAL_RECORD = "modal.json"
FINAL_STATES = ("succeeded", "failed")


def modal_record(run_dir: Path) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / MODAL_RECORD)


def write_modal_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(Path(run_dir) / MODAL_RECORD, record)


def _read(volume: Any, path: str) -> bytes | None:
    try:
        return b"".join(volume.read_file(path))
    except FileNotFoundError:
        return None
    except Exception as e:  # modal.exception.NotFoundError, without importing modal here
        if type(e).__name__ == "NotFoundError":
            return None
        raise


def pull_run(volume: Any, run_id: str, run_dir: Path, names: tuple[str, ...] = SMALL_FILES,
             logs: bool = True) -> dict[str, Any]:
    """Copy a run's records (and logs) from the runs Volume into run_dir; returns its status."""
    run_dir = Path(run_dir)
    for name in names:
        data = _read(volume, f"{run_id}/{name}")
        if data is not None:
            write_text(run_dir / name, data.decode(errors="replace"))
    if logs:
        try:
            entries = volume.listdir(f"{run_id}/logs")
        except Exception as e:  # no logs yet
            if type(e).__name__ not in ("NotFoundError", "FileNotFoundError"):
                raise
            entries = []
        for entry in entries:
            name = Path(entry.path).name
            data = _read(volume, f"{run_id}/logs/{name}")
            if data is not None:
                write_text(run_dir / "logs" / name, data.decode(errors="replace"))
    return read_json(run_dir / "status.json", {"state": "unknown", "stages": {}})


def _gpu_count(gpu: str | None) -> int:
    if not gpu:
        return 0
    _, _, count = gpu.partition(":")
    return int(count or 1)


def _hours(entry: dict[str, Any]) -> float:
    return (stage_seconds(entry) or 0.0) / 3600


def stage_gpus(run_dir: Path) -> dict[str, str]:
    """Each GPU stage's Modal GPU string: the one it got (a stand-in from its fallback list, recorded in the
    container), else the one it asked for."""
    record = modal_record(run_dir) or {}
    stages = read_json(Path(run_dir) / "status.json", {"stages": {}})["stages"]
    return {stage: stages.get(stage, {}).get("gpu") or options["gpu"]
            for stage, options in (record.get("options") or {}).items() if options.get("gpu")}


def gpu_usage(run_dir: Path) -> tuple[float | None, float | None]:
    """(GPU-hours, cost in USD) of a Modal run from its stages' wall times; (None, None) for local runs.

    A stage on the job's own card costs the job's price (gpu.usd_per_hour); one on another card (a stand-in
    from the fallback list, backend.merge_gpu or eval_gpu) that card's price in conf/gpu_prices.yaml."""
    from runner.gpu_tables import usd_per_gpu_hour

    record = modal_record(run_dir)
    if not record:
        return None, None
    status = read_json(Path(run_dir) / "status.json", {"stages": {}})
    hours = cost = 0.0
    price = record.get("usd_per_gpu_hour")
    job_card = ((record["options"].get("train") or {}).get("gpu") or "").partition(":")[0]
    for stage, gpu in stage_gpus(run_dir).items():
        gpu_hours = _hours(status["stages"].get(stage, {})) * _gpu_count(gpu)
        card = gpu.partition(":")[0]
        stage_price = price if card == job_card else usd_per_gpu_hour(card)
        hours += gpu_hours
        cost = None if cost is None or stage_price is None else cost + gpu_hours * stage_price
    return hours, cost
