"""A sweep's jobs, found again from their run folders: the objective each reached, which launcher ran it
and where, and one table for the whole sweep with the best job marked.

Every launcher (here, side by side on this machine's GPUs, Modal, Slurm through submitit) writes the same
run folders, each with `job.json: launch` naming its sweep and job number, so the table is built the same
way whatever ran the jobs, and is kept beside Hydra's record of the sweep:

    <runs_root>/_sweeps/<time>/multirun.yaml   Hydra's (grid: the runner's sweeper; Optuna: its own)
    <runs_root>/_sweeps/<time>/sweep.json      one row per job: run, status, objective, launcher, where
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

from runner.records import read_json, write_json


def objective_value(metrics: dict[str, Any], metric: str) -> float | None:
    """The number at `metric` (a dotted path into metrics.json), or None: a failed or unscored job."""
    node: Any = metrics
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict) and isinstance(node.get("last"), (int, float)):
        node = node["last"]   # a logged series (eval_loss, train_loss): its last value
    if isinstance(node, bool) or not isinstance(node, (int, float)) or math.isnan(node):
        return None
    return float(node)


def objective_figures(config: dict[str, Any]) -> list[str]:
    """The metrics.json paths a job of this config will write that an objective can name: the trainer's
    losses and speed (train stage), the eval stage's figures for the tuned model (and the base one with
    eval.base), generated answers' scores only for text-to-SQL data with a held-out file."""
    stages, dataset = config.get("stages") or {}, config.get("dataset") or {}
    held_out = bool(dataset.get("test_path") or config.get("val_set_size") or config.get("test_datasets"))
    figures = []
    if stages.get("train", True):
        figures += ["train_loss", "train_runtime_s", "train_samples_per_second", "startup.first_step_s"]
        if config.get("test_datasets") or config.get("val_set_size"):   # in-training evaluations
            figures += ["eval_loss", "eval_curve.best"]
    if stages.get("eval", True) and held_out:
        per_model = ["eval_loss", "perplexity"]
        if dataset.get("format") == "sqlqa" and dataset.get("test_path"):
            per_model += ["exact_match", "execution_accuracy", "generate_tok_s"]
        models = ["tuned", "base"] if (config.get("eval") or {}).get("base", True) else ["tuned"]
        figures += [f"eval.{model}.{figure}" for model in models for figure in per_model]
    return figures


def check_objective(config: dict[str, Any], strict: bool = True) -> None:
    """A sweep or search is compared by its objective: it must be a figure its jobs will write (`strict`: a
    search, which optimises nothing without it), or at least one some job can write (a grid: the table
    marks no best job where it is missing, as when eval is turned off)."""
    from runner.errors import UserError, did_you_mean

    metric = str(config["objective"]["metric"])
    every = {**config, "stages": {}, "val_set_size": 0.05, "eval": {"base": True},
             "dataset": {"format": "sqlqa", "test_path": "held-out"}}
    figures = objective_figures(config if strict else every)
    if metric not in figures:
        hint = did_you_mean(metric, figures) or f" (this job's stages write: {', '.join(figures) or 'nothing'})"
        raise UserError(f"objective.metric={metric} is not a figure this sweep's jobs will write{hint}")


def launch_info(launcher: str, sweep_dir: str | Path | None = None, job_num: int | None = None,
                devices: str | None = None) -> dict[str, Any]:
    """What job.json records about how a job was launched, and where it ran."""
    info: dict[str, Any] = {"launcher": launcher, "host": platform.node()}
    if sweep_dir is not None:
        info.update(sweep_dir=str(Path(sweep_dir).resolve()), job_num=job_num)
    devices = devices if devices is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices:
        info["devices"] = devices
    for variable in ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(variable):
            info["job_id"] = os.environ[variable]
    return info


def where(launch: dict[str, Any], job: dict[str, Any]) -> str:
    from runner.backends.registry import backend_named

    compute = job.get("compute") or {}
    remote = backend_named(compute.get("backend")).where(compute)
    if remote:
        return remote
    place = launch.get("host") or "?"
    if launch.get("devices"):
        place += f" GPU {launch['devices']}"
    if launch.get("job_id"):
        place += f" (job {launch['job_id']})"
    return place


def sweep_rows(runs_root: Path, sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job of this sweep, in job order."""
    sweep_dir = Path(sweep_dir).resolve()
    rows = []
    # jobs an earlier run had done already (runner/cache.py): that run, in this job's place
    for marker in sorted((sweep_dir / "cached").glob("*.json")):
        cached = read_json(marker, {})
        folder = Path(runs_root) / str(cached.get("run_id"))
        if (folder / "job.json").is_file():
            rows.append(_row(folder, read_json(folder / "job.json", {}), cached.get("job_num"),
                             {"launcher": cached.get("launcher")}, cached=True))
    for path in sorted(Path(runs_root).glob("*/job.json")):
        job = read_json(path, {})
        launch = job.get("launch") or {}
        if launch.get("sweep_dir") != str(sweep_dir):
            continue
        rows.append(_row(path.parent, job, launch.get("job_num"), launch))
    rows.sort(key=lambda r: (r["job"] is None, r["job"] or 0))
    return rows


def _row(folder: Path, job: dict[str, Any], job_num: Any, launch: dict[str, Any], cached: bool = False) -> dict[str, Any]:
    from runner.backends.modal_records import gpu_usage
    from runner.report import eval_metric

    status, metrics = read_json(folder / "status.json", {}), read_json(folder / "metrics.json", {})
    objective = job.get("objective") or {}
    state = status.get("state", "unknown")
    if state == "failed" and status.get("failed_stage"):
        state = f"failed ({status['failed_stage']})"
    gpu_hours, cost = gpu_usage(folder)
    return {
        "job": job_num, "run_id": folder.name, "overrides": shown_overrides(job),
        "status": "cached" if cached and state == "succeeded" else state,
        "loss": (metrics.get("train_loss") or {}).get("last"), "eval": eval_metric(metrics),
        "objective": objective_value(metrics, objective.get("metric", "")) if state == "succeeded" else None,
        "metric": objective.get("metric"), "direction": objective.get("direction"), "launcher": launch.get("launcher"),
        "where": f"run {folder.name}" if cached else where(launch, job), "gpu_hours": gpu_hours, "cost": cost,
    }


def shown_overrides(job: dict[str, Any]) -> str:
    """A job's overrides as typed, with the card gpu=auto chose for it (`gpu=auto:l40s`)."""
    overrides = list(job.get("overrides") or [])
    chosen = (job.get("gpu_choice") or {}).get("chosen")
    if chosen:
        shown = [f"gpu=auto:{chosen}" if o == "gpu=auto" else o for o in overrides]
        overrides = shown if shown != overrides else [*overrides, f"gpu=auto:{chosen}"]
    return " ".join(overrides)


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if r["objective"] is not None]
    if not scored:
        return None
    pick = max if scored[0].get("direction") == "maximize" else min
    return pick(scored, key=lambda r: r["objective"])


def record(runs_root: Path, sweep_dir: Path) -> list[dict[str, Any]]:
    """The sweep's rows, also written to <sweep>/sweep.json (with the best job)."""
    rows = sweep_rows(runs_root, sweep_dir)
    top = best(rows)
    if Path(sweep_dir).is_dir():
        write_json(Path(sweep_dir) / "sweep.json", {"jobs": rows, "best": top and top["run_id"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The sweep table: every job, its objective, the launcher and where it ran; the best marked `*`."""
    top = best(rows)

    def fmt(value: Any, digits: int = 3) -> str:
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"

    metric = next((r["metric"] for r in rows if r.get("metric")), "objective")
    headers = ["job", "overrides", "status", "train loss", "eval", f"{metric} ({rows[0].get('direction', '')})" if rows else "objective",
               "launcher", "where", "GPU-h", "cost"]
    body = [[("*" if r is top else "") + str(r["job"] if r["job"] is not None else ""), r["overrides"] or "(defaults)",
             r["status"], fmt(r["loss"]), r["eval"], fmt(r["objective"], 4), str(r["launcher"] or "-"), r["where"],
             fmt(r["gpu_hours"], 2), f"${r['cost']:.2f}" if r["cost"] is not None else "-"] for r in rows]
    from runner.report import text_table

    text = [text_table(headers, body)]
    if top:
        text.append(f"* best: job {top['job']}, run {top['run_id']}, {top['metric']} = {top['objective']:.4f}")
    return "\n".join(text)
