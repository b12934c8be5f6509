"""Tracking for real: the runner's own record of a run in MLflow or Weights & Biases, beside what axolotl's
trainer logs there, in one tracking run.

Before train, the runner opens the tracking run itself: the run id, group choices and overrides as
params/tags, the composed config, the axolotl config, job.json and provenance.json as artifacts. The
train stage's trainer then attaches to that same run (MLFLOW_RUN_ID; WANDB_RUN_ID with WANDB_RESUME) and
logs its losses there. After each later stage the runner adds the run's figures (train loss, the eval
stage's base and tuned figures) as metrics. `tracking.json` in the run folder says where the run is.

Runs inside the stage pipeline (runner.pipeline.run_stage), so it works the same locally and in Modal
containers. Secrets (WANDB_API_KEY, HF_TOKEN) are read from the environment by the trackers themselves and
are never written anywhere by the runner (tests/test_tracking.py scans every file a run writes).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from runner.records import override_pairs, read_json, write_json
from runner.runfolder import RunFolder

RECORD = "tracking.json"
ARTIFACTS = ("composed.yaml", "config.yml", "job.json", "provenance.json")


def tracker(config: dict[str, Any]) -> str | None:
    if config.get("use_mlflow"):
        return "mlflow"
    if config.get("wandb_project"):
        return "wandb"
    return None


def _tags(folder: RunFolder, job: dict[str, Any]) -> dict[str, str]:
    tags = {"runner.run_id": folder.run_id, "runner.overrides": " ".join(job.get("overrides") or []) or "(defaults)"}
    tags.update({f"runner.{group}": str(choice) for group, choice in (job.get("choices") or {}).items() if choice})
    sweep = (job.get("launch") or {}).get("sweep_dir")
    if sweep:
        tags["runner.sweep"] = Path(sweep).name
    return tags


def _params(folder: RunFolder, job: dict[str, Any]) -> dict[str, str]:
    return {"run_id": folder.run_id, **{f"override.{k}": v[:500] for k, v in override_pairs(job.get("overrides")).items()}}


def _job_summary(folder: RunFolder, job: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": folder.run_id, "overrides": job.get("overrides") or [], "choices": job.get("choices") or {},
            "sweep": Path(str((job.get("launch") or {}).get("sweep_dir"))).name if (job.get("launch") or {}).get("sweep_dir") else None}


def figures(folder: RunFolder) -> dict[str, float]:
    """The run's figures so far, as flat metric names: train/eval loss, the eval stage's base and tuned."""
    metrics = folder.metrics()
    out: dict[str, float] = {}
    for key in ("train_loss", "eval_loss"):
        series = metrics.get(key) or {}
        if isinstance(series.get("last"), (int, float)):
            out[f"runner/{key}_last"] = float(series["last"])
    if isinstance(metrics.get("train_runtime_s"), (int, float)):
        out["runner/train_runtime_s"] = float(metrics["train_runtime_s"])
    record = metrics.get("eval") if isinstance(metrics.get("eval"), dict) else {}
    for side in ("base", "tuned"):
        for key, value in (record.get(side) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"eval/{side}/{key}"] = float(value)
    return out


def _last_stage(config: dict[str, Any]) -> str:
    from runner.settings import STAGES

    enabled = [s for s in STAGES if config.get("stages", {}).get(s, True)]
    return enabled[-1] if enabled else STAGES[-1]


# -- MLflow ------------------------------------------------------------------------------------------
def _mlflow_client(config: dict[str, Any]):
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):   # its database set-up chatter; errors still surface
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = str(config.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or "")
    return MlflowClient(tracking_uri=uri or None), uri


def _mlflow_start(folder: RunFolder, config: dict[str, Any]) -> dict[str, Any]:
    from mlflow.entities import Param, RunTag

    uri = str(config.get("mlflow_tracking_uri") or "")
    artifacts = None
    if uri.startswith("sqlite:///"):   # a local database: its folder also holds the artifacts
        store = Path(uri[len("sqlite:///"):]).parent
        store.mkdir(parents=True, exist_ok=True)
        artifacts = (store / "artifacts").as_uri()
    client, uri = _mlflow_client(config)
    name = str(config.get("mlflow_experiment_name") or "runner")
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # noqa: BLE001 - another job of the sweep created it first
            experiment_id = client.get_experiment_by_name(name).experiment_id
    else:
        experiment_id = experiment.experiment_id
    job = read_json(folder.path / "job.json", {})
    run = client.create_run(experiment_id, run_name=str(config.get("mlflow_run_name") or folder.run_id),
                            tags=_tags(folder, job))
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in _params(folder, job).items()],
                     tags=[RunTag("mlflow.note.content", f"runner run {folder.run_id}: {folder.path}")])
    for file_name in ARTIFACTS:
        if (folder.path / file_name).is_file():
            client.log_artifact(run_id, str(folder.path / file_name), artifact_path="runner")
    return {"tracker": "mlflow", "tracking_uri": uri, "experiment": name, "experiment_id": experiment_id,
            "run_id": run_id, "artifact_uri": run.info.artifact_uri,
            "open": f"mlflow ui --backend-store-uri {uri}" if uri.startswith(("sqlite:", "/")) else uri}


def _mlflow_log(folder: RunFolder, config: dict[str, Any], record: dict[str, Any], final: str | None) -> None:
    import time

    from mlflow.entities import Metric

    client, _ = _mlflow_client(config)
    stamp = int(time.time() * 1000)
    values = figures(folder)
    if values:
        client.log_batch(record["run_id"], metrics=[Metric(k, v, stamp, 0) for k, v in values.items()])
    if final:
        client.set_terminated(record["run_id"], status=final)


# -- Weights & Biases --------------------------------------------------------------------------------
def _wandb_mode(config: dict[str, Any]) -> str:
    mode = config.get("wandb_mode") or os.environ.get("WANDB_MODE")
    if mode:
        return str(mode)
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _wandb_run(record: dict[str, Any], **extra: Any):
    import wandb

    return wandb.init(project=record["project"], entity=record.get("entity"), id=record["run_id"],
                      name=record["name"], dir=record["dir"], mode=record["mode"], resume="allow",
                      settings=wandb.Settings(silent=True, console="off", x_disable_stats=True), **extra)


def _wandb_start(folder: RunFolder, config: dict[str, Any]) -> dict[str, Any]:
    import wandb

    from runner.records import flatten

    record = {"tracker": "wandb", "project": str(config.get("wandb_project")), "entity": config.get("wandb_entity"),
              "run_id": re.sub(r"[^a-zA-Z0-9_-]", "-", folder.run_id), "name": str(config.get("wandb_name") or folder.run_id),
              "mode": _wandb_mode(config), "dir": str(folder.path / "tracking")}
    Path(record["dir"]).mkdir(parents=True, exist_ok=True)
    job = read_json(folder.path / "job.json", {})
    tags = _tags(folder, job)
    run = _wandb_run(record, group=tags.get("runner.sweep"),
                     tags=[f"{k.split('.', 1)[1]}={v}"[:64] for k, v in tags.items() if k not in ("runner.overrides", "runner.run_id")],
                     config={"runner": _job_summary(folder, job), "composed": flatten(folder.composed())})
    artifact = wandb.Artifact(f"runner-config-{record['run_id']}", type="config",
                              description=f"runner run {folder.run_id}: composed config, axolotl config, job, provenance")
    for file_name in ARTIFACTS:
        if (folder.path / file_name).is_file():
            artifact.add_file(str(folder.path / file_name), name=file_name)
    run.log_artifact(artifact)
    record["run_dir"] = str(Path(run.dir).parent)
    if record["mode"] == "offline":
        record["open"] = f"wandb sync {Path(record['dir']) / 'wandb'}/offline-run-*  (offline: no WANDB_API_KEY)"
    else:
        record["open"] = run.url
    run.finish()
    wandb.teardown()   # stop this process's wandb service: the trainer's process must start its own
    return record


def _wandb_log(folder: RunFolder, config: dict[str, Any], record: dict[str, Any], final: str | None) -> None:
    values = figures(folder)
    if not values and not final:
        return
    import wandb

    run = _wandb_run(record)
    run.summary.update(values)
    run.finish(exit_code=0 if final in (None, "FINISHED") else 1)
    wandb.teardown()


# -- the pipeline's hooks ------------------------------------------------------------------------------
def before_stage(folder: RunFolder, config: dict[str, Any], stage: str) -> dict[str, str]:
    """Before train: open the tracking run (once; a resumed run keeps its own). Returns the environment the
    stage's trainer needs to attach to it."""
    kind = tracker(config)
    if kind is None or stage != "train":
        return {}
    record = read_json(folder.path / RECORD, None)
    if not record:
        record = _mlflow_start(folder, config) if kind == "mlflow" else _wandb_start(folder, config)
        write_json(folder.path / RECORD, record)
    if kind == "mlflow":
        return {"MLFLOW_RUN_ID": record["run_id"], "MLFLOW_EXPERIMENT_NAME": record["experiment"],
                **({"MLFLOW_TRACKING_URI": record["tracking_uri"]} if record.get("tracking_uri") else {})}
    return {"WANDB_RUN_ID": record["run_id"], "WANDB_RESUME": "allow", "WANDB_MODE": record["mode"],
            "WANDB_DIR": record["dir"], "WANDB_PROJECT": record["project"]}


def after_stage(folder: RunFolder, config: dict[str, Any], stage: str, state: str) -> None:
    """After a stage: the run's figures so far as metrics; the tracking run ends with the last stage, or
    as failed when a stage fails."""
    record = read_json(folder.path / RECORD, None)
    if not record or stage in ("prepare", "preprocess"):
        return
    final = "FAILED" if state == "failed" else ("FINISHED" if stage == _last_stage(config) else None)
    try:
        (_mlflow_log if record["tracker"] == "mlflow" else _wandb_log)(folder, config, record, final)
    except Exception as e:  # noqa: BLE001 - the run's own records hold the figures; the tracker is a copy
        print(f"warning: could not log to the {record['tracker']} run after {stage}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)


def where(folder: RunFolder) -> str | None:
    """One line for `runs show`: which tracker holds the run and how to open it."""
    record = read_json(folder.path / RECORD, None)
    if not record:
        return None
    if record["tracker"] == "mlflow":
        return f"MLflow run {record['run_id']} in {record.get('tracking_uri') or 'the default store'} ({record.get('open')})"
    return f"W&B run {record.get('project')}/{record['run_id']} ({record.get('mode')}; {record.get('open')})"
