"""The Modal backend, local side: check, submit, follow, report.

1. Validate every job's Modal settings (GPU strings, timeouts, ...) and find credentials: one-line errors,
   before anything is uploaded or started.
2. Make a local run folder per job (same records as the local backend, plus modal.json), upload data
   files that are not shipped in the image, and spawn the app's `sweep` function with plain-data requests.
3. detach=true: print the run ids and return. Otherwise copy status back every backend.poll_s seconds,
   then the records and logs of every run, and print each run's summary and the sweep table.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import report
from runner.backends.outcome import Outcome
from runner.backends import modal_bounds
from runner.backends.modal_paths import container_job, data_uploads
from runner.backends import modal_settings as ms
from runner.backends.modal_records import FINAL_STATES, pull_run, write_modal_record
from runner.backends.modal_credentials import NO_CREDENTIALS, require_credentials
from runner.cache import prepared_key
from runner.errors import UserError
from runner.plan import Job
from runner.runfolder import RunFolder, now, open_run, records

SECRET_KEYS = {"huggingface": "HF_TOKEN=hf_...", "wandb": "WANDB_API_KEY=..."}   # backend.secrets.* → what it holds


def secrets_used(jobs: list[Job]) -> dict[str, str]:
    """Each Modal Secret the jobs' stages attach → its backend.secrets key."""
    used = {name for job in jobs for opts in ms.stage_options(job.config).values() for name in opts.secrets}
    return {name: key for job in jobs for key, name in (job.config["backend"].get("secrets") or {}).items()
            if name in used}


def require_secrets(secrets: dict[str, str]) -> None:
    """Each named Modal Secret exists (looked up by name; its values never leave Modal)."""
    import modal
    from modal.exception import AuthError, NotFoundError

    for name, key in sorted(secrets.items()):
        try:
            modal.Secret.from_name(name).hydrate()
        except NotFoundError:
            raise UserError(f"Modal Secret '{name}' not found: create it with `modal secret create {name} "
                            f"{SECRET_KEYS.get(key, 'KEY=...')}` or set backend.secrets.{key} to another "
                            f"(or null{', for public models' if key == 'huggingface' else ''})") from None
        except AuthError:
            raise UserError(NO_CREDENTIALS.replace("no Modal credentials found", "Modal rejected the credentials")) from None


def sweep_settings(jobs: list[Job]) -> ms.ModalSettings:
    settings = {ms.app_settings(job.config) for job in jobs}
    if len(settings) > 1:
        raise UserError("one sweep must use one Modal app: backend.app_name, images, volumes and secrets "
                        "cannot vary between its jobs")
    lists = {(train.gpu, *train.fallbacks) for train in (ms.stage_options(job.config)["train"] for job in jobs)}
    if len(lists) == 1 and len(next(iter(lists))) > 1:   # Modal's fallback list, declared with the classes
        return replace(settings.pop(), gpu_fallbacks=lists.pop())
    if any(len(gpus) > 1 for gpus in lists):
        print("note: these jobs want different GPU fallback lists, and Modal 1.3 takes a list only where a class "
              "is declared: each job asks for its first GPU only", file=sys.stderr)
    return settings.pop()


def job_request(job: Job, index: int, run_id: str, runs_dir: Path, pretrained_dir: Path) -> dict[str, Any]:
    """Everything the app needs for one job, as plain data: above all the run folder's records, resolved
    for the container's paths (runs and pretrained Volumes, uploaded data), so it never composes again."""
    remote = container_job(job, run_id, runs_dir, pretrained_dir)
    return {
        "index": index,
        "run_id": run_id,
        "records": records(remote),
        "stages": ms.enabled_stages(remote.config),
        "options": {stage: vars(opts) | {"secrets": list(opts.secrets), "fallbacks": list(opts.fallbacks)}
                    for stage, opts in ms.stage_options(remote.config).items()},
        "model_key": ms.model_key(remote.config),
        # the key the run folder itself has in its container (runner/prepared.py: data_key)
        "preprocess_key": prepared_key(remote.axolotl_config, {split: data.sha256 for split, data in job.data.items()}),
    }


def run_jobs(jobs: list[Job]) -> list[Outcome]:
    # 1. everything that can be checked here, before any work or upload
    settings = sweep_settings(jobs)
    for job in jobs:
        ms.stage_options(job.config)
    modal_bounds.check_sweep([job.config for job in jobs])   # this batch of an Optuna search, too
    max_parallel, poll_s = ms.max_parallel(jobs[0].config), ms.poll_seconds(jobs[0].config)
    detach = any(job.config.get("detach") for job in jobs)
    require_credentials(next((job.placement.reason for job in jobs if job.placement.auto), None))
    os.environ["RUNNER_MODAL_SETTINGS"] = settings.to_json()
    import modal

    from runner.backends import modal_app

    if modal_app.settings != settings:   # imported earlier in this process with other settings
        modal_app = importlib.reload(modal_app)
    require_secrets(secrets_used(jobs))

    # 2. local run folders, data uploads, submission
    runs: list[tuple[Job, RunFolder, dict[str, Any]]] = []
    for index, job in enumerate(jobs, start=1):
        local_job, folder = open_run(job)
        request = job_request(job, index, folder.run_id, modal_app.runs_dir(), modal_app.pretrained_dir())
        runs.append((local_job, folder, request))
    try:
        return submit(modal_app, settings, runs, max_parallel, poll_s, detach)
    except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM, SIGHUP: as the local backend, the runs are interrupted
        if not detach:                # (a detached app goes on without this process)
            how = {"signal": e.signal_name} if getattr(e, "signal_name", None) else {}
            for _, folder, _ in runs:
                if folder.status().get("state") not in FINAL_STATES:
                    folder.set_state("interrupted", **how)
        raise
    except modal.exception.AuthError:
        raise UserError(NO_CREDENTIALS.replace("no Modal credentials found", "Modal rejected the credentials")) from None
    except modal.exception.Error as e:   # image build, quota, lost connection: Modal's own message
        lines = [line for line in str(e).splitlines() if line.strip()]
        print(f"error: Modal: {lines[0] if lines else type(e).__name__}", file=sys.stderr)
        for _, folder, _ in runs:
            if folder.status().get("state") not in FINAL_STATES:
                folder.set_state("failed", error=f"Modal: {type(e).__name__}")
        return [Outcome(folder.path, "failed", {}, job.overrides) for job, folder, _ in runs]


def submit(modal_app: Any, settings: ms.ModalSettings, runs: list[tuple[Job, RunFolder, dict[str, Any]]],
           max_parallel: int, poll_s: float, detach: bool) -> list[Outcome]:
    import modal

    upload_data(modal_app.runs_volume, runs)
    interrupt: KeyboardInterrupt | None = None
    with modal.enable_output(), modal_app.app.run(detach=detach):
        try:
            call = spawn(modal_app, settings, runs, max_parallel, detach)
            if detach:
                return [Outcome(folder.path, "submitted", {}, job.overrides) for job, folder, _ in runs]
            started = time.monotonic()
            results = wait_for(call, modal_app.runs_volume, runs, poll_s)
        except KeyboardInterrupt as e:
            # Leaving app.run() with it stops the app and its running stages; Modal's app.run() then
            # swallows it (modal/runner.py, _run_app) and the block ends as if it had finished: raise it again.
            interrupt = e
            raise
    if interrupt is not None:
        raise interrupt
    return report_results(modal_app.runs_volume, runs, results, time.monotonic() - started)


def spawn(modal_app: Any, settings: ms.ModalSettings, runs: list[tuple[Job, RunFolder, dict[str, Any]]],
          max_parallel: int, detach: bool) -> Any:
    """Start the app's sweep function with every job; record the call in each run folder."""
    call = modal_app.sweep.spawn([request for _, _, request in runs], max_parallel)
    for job, folder, request in runs:
        write_modal_record(folder.path, {
            "app": settings.app_name, "call_id": call.object_id, "runs_volume": settings.runs_volume,
            "submitted": now(), "detached": detach, "options": request["options"],
            "usd_per_gpu_hour": job.config["gpu"].get("usd_per_hour"),
        })
        folder.set_state("submitted")
        print(f"[{request['index']}/{len(runs)}] run {folder.run_id}  {' '.join(job.overrides) or '(defaults)'}\n"
              f"  {job.compute.describe()}", file=sys.stderr)
    if detach:
        print("\n".join(folder.run_id for _, folder, _ in runs))
        print(f"submitted {len(runs)} run(s) to Modal app '{settings.app_name}' (detached); "
              "follow with `python -m runner.runs sync`", file=sys.stderr)
    return call


def upload_data(volume: Any, runs: list[tuple[Job, RunFolder, dict[str, Any]]]) -> None:
    uploads = {remote: local for job, _, _ in runs for remote, local in data_uploads(job).items()}
    uploads = {remote: local for remote, local in uploads.items() if not _on_volume(volume, remote)}
    if not uploads:
        return
    with volume.batch_upload(force=True) as batch:
        for remote, local in uploads.items():
            print(f"uploading {local} → runs Volume /{remote}", file=sys.stderr)
            batch.put_file(local, f"/{remote}")


def _on_volume(volume: Any, remote: str) -> bool:
    """Uploaded by an earlier sweep (the path holds the content's hash)."""
    try:
        return any(Path(entry.path).name == Path(remote).name for entry in volume.listdir(str(Path(remote).parent)))
    except Exception as e:  # noqa: BLE001 - modal.exception.NotFoundError without importing modal here
        if type(e).__name__ in ("NotFoundError", "FileNotFoundError"):
            return False
        raise


def wait_for(call: Any, volume: Any, runs: list[tuple[Job, RunFolder, dict[str, Any]]],
             poll_s: float) -> list[dict[str, Any]]:
    """Wait for the sweep, copying each run's status back and printing its changes."""
    seen: dict[str, str] = {}
    while True:
        try:
            return call.get(timeout=poll_s)
        except TimeoutError:   # still running (Modal raises the builtin TimeoutError for a poll)
            pass
        for _, folder, request in runs:
            status = pull_run(volume, folder.run_id, folder.path, names=("status.json", "metrics.json"), logs=False)
            for stage, entry in status.get("stages", {}).items():
                key, state = f"{folder.run_id}/{stage}", entry.get("state")
                if state in ("running", "succeeded", "failed") and seen.get(key) != state:
                    seen[key] = state
                    print(f"[{request['index']}/{len(runs)}] {folder.run_id}  {stage} {state}", file=sys.stderr)
        time.sleep(0)  # let an interrupt land between polls


def report_results(volume: Any, runs: list[tuple[Job, RunFolder, dict[str, Any]]],
                   results: list[dict[str, Any]], elapsed_s: float) -> list[Outcome]:
    by_id = {result["run_id"]: result for result in results}
    outcomes = []
    for job, folder, request in runs:
        status = pull_run(volume, folder.run_id, folder.path)
        result = by_id.get(folder.run_id, {"state": status.get("state", "unknown")})
        state = result["state"] if result["state"] in FINAL_STATES else status.get("state", "unknown")
        shown = state
        if state != "succeeded":
            shown = f"failed ({result.get('failed_stage') or status.get('failed_stage') or '?'})"
            if result.get("error"):
                print(f"error: run {folder.run_id}: {result['error']}; logs in {folder.path / 'logs'}", file=sys.stderr)
        metrics = folder.metrics()
        print(report.run_summary(folder.path, shown, elapsed_s, metrics, adapter=bool(job.config.get("adapter"))))
        print(f"  {'weights':<12}runs Volume '{ms.app_settings(job.config).runs_volume}': /{folder.run_id}/outputs")
        outcomes.append(Outcome(folder.path, "succeeded" if state == "succeeded" else "failed", metrics, job.overrides))
    return outcomes
