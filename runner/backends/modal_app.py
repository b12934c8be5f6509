"""The Modal app: the image, volumes, secrets, then one function per stage and the sweep that calls them.

Every function takes plain data (run ids, override lists, dicts) and runs the same stage code as the local
backend, `runner.pipeline.run_stage`, over a run folder on the "runs" Volume. modal_launcher.py is the
local side; it sets RUNNER_MODAL_SETTINGS (app, volume and secret names from conf/backend/modal.yaml and
the command line) before importing this module, and the image carries the same value, so containers see
the same app.
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path
from typing import Any

import modal

from runner.backends.modal_bounds import SWEEP_LIMIT_H
from runner.backends.modal_settings import PRETRAINED_MOUNT, RUNS_MOUNT, ModalSettings, StageOptions, app_settings
from runner.backends.modal_snapshot import SnapshotStage
from runner.backends.modal_sweep import JobResult, run_sweep
from runner.backends.modal_volumes import commit as _commit, committing_every as _committing_every, reload as _reload
from runner.paths import CONF_DIR
from runner.records import write_json
from runner.stack import LOCK, PIP_INSTALL_OPTIONS, read_lock

SETTINGS_ENV = "RUNNER_MODAL_SETTINGS"
MINUTES, HOURS = 60, 60 * 60


def _settings() -> ModalSettings:
    if os.environ.get(SETTINGS_ENV):
        return ModalSettings.from_json(os.environ[SETTINGS_ENV])
    import yaml  # not launched by the runner (e.g. `modal shell`): the defaults as written in conf/

    return app_settings(yaml.safe_load((CONF_DIR / "backend" / "modal.yaml").read_text()))


settings = _settings()
app = modal.App(settings.app_name)

# ---- the image ----------------------------------------------------------------------------------
# One image for every stage and for `runner.serve`: Modal's own Debian slim with Python 3.12 (a base that
# Modal builds itself, so there is no registry tag to guess; it carries gcc, which Triton needs to build
# its kernel launchers), and on it the GPU stack exactly as runner/stack/gpu.lock pins it: pip resolves
# nothing at build time and every file must match its sha256. torch's wheels bring CUDA 13.0 with them.
# The GPU benchmark installs the same lock (bench/stack_wheels.py), so Modal runs what was measured.
STACK = read_lock(LOCK)
stack_image = modal.Image.debian_slim(python_version=STACK.python).pip_install_from_requirements(
    str(LOCK), extra_options=PIP_INSTALL_OPTIONS)

# Where the project lands in containers. They never compose a config (the launcher sends each run's
# records, resolved), so conf/ is only there for this module's defaults (`modal shell`, `modal deploy`).
PROJECT_DIR = "/root/project"


def project_image(env: dict[str, str] | None = None) -> modal.Image:
    """The stack image, this project's environment (plus `env`), then the project's files.

    The files come last and stay local mounts (added when a container starts, so editing the code rebuilds
    nothing): Modal refuses any build step after an `add_local_*` layer (modal/image.py,
    `_assert_no_mount_layers`), so an image that needs more environment (runner.serve's) asks for it here."""
    return (
        stack_image.env({
            SETTINGS_ENV: settings.to_json(),   # names only: never a secret value
            "RUNNER_PROJECT": PROJECT_DIR,
            "AXOLOTL_DO_NOT_TRACK": "1",
            "DO_NOT_TRACK": "1",
            # no bytecode file for the stages' imports (runner.stages.import_bundle): the image holds pip's own
            # bytecode, the only shared place would be the pretrained Volume, committed by the prepare stage
            # alone, and what a read from it costs at a container's start is not measured
            "RUNNER_IMPORT_BUNDLE": "0",
            **(env or {}),
        })
        .add_local_dir(CONF_DIR, f"{PROJECT_DIR}/conf", ignore=["experiment"])
        # the package with its data files (shipped datasets, axolotl key schema, the lock), not only .py files
        .add_local_python_source("runner", ignore=["**/__pycache__/**", "**/*.pyc"])
    )


image = project_image()

# ---- volumes and secrets ------------------------------------------------------------------------
# Base models are downloaded once into "pretrained" (the HF hub cache) and reused by every later run;
# run folders live on "runs" with the same layout as locally (<runs_root>/<run_id>/...).
pretrained_volume = modal.Volume.from_name(settings.pretrained_volume, create_if_missing=True)
runs_volume = modal.Volume.from_name(settings.runs_volume, create_if_missing=True)
VOLUMES = {PRETRAINED_MOUNT: pretrained_volume, RUNS_MOUNT: runs_volume}
# The HF token (gated models; none by default) reaches containers as an environment variable from a
# Modal Secret; the W&B key is added per job, only where tracking=wandb (see modal_settings.secret_names).
BASE_SECRETS = [modal.Secret.from_name(settings.hf_secret)] if settings.hf_secret else []


def runs_dir() -> Path:
    """The runs Volume's mount; a plain folder when a test runs the functions in-process."""
    return Path(os.environ.get("RUNNER_MODAL_RUNS_DIR", RUNS_MOUNT))


def pretrained_dir() -> Path:
    return Path(os.environ.get("RUNNER_MODAL_PRETRAINED_DIR", PRETRAINED_MOUNT))


# ---- one function per stage -------------------------------------------------------------------
# Each is a class so that `with_options` can give every call its job's own GPU, timeout and retries
# (Modal 1.3 offers with_options on classes); the decorator values are only defaults.
def run_stage_in_container(request: dict[str, Any], stage: str) -> dict[str, Any]:
    """The body of every stage function: reload, run the stage over the run folder, commit."""
    from runner.pipeline import StageFailed, run_stage
    from runner.runfolder import RunFolder

    _reload(runs_volume, pretrained_volume)
    folder = RunFolder(runs_dir() / request["run_id"])
    for skipped, reason in (request.get("skipped") or {}).items():
        folder.set_stage(skipped, "skipped", reason=reason)
    record_card(folder, stage, request.get("gpus") or [])
    try:
        with _committing_every(5 * MINUTES, runs_volume):
            result = run_stage(folder, stage)
    except StageFailed as e:
        # a plain exception crosses back to the caller (and triggers Modal's retries, if any)
        if e.reason:  # the stage's own one-line explanation (a failed hub download, ...): that alone
            raise RuntimeError(f"{stage}: {e.reason}") from None
        tail = "\n".join(e.tail[-15:])
        raise RuntimeError(f"stage '{stage}' failed (exit {e.returncode}); last lines of {e.log}:\n{tail}") from None
    finally:
        _commit(runs_volume, *([pretrained_volume] if stage == "prepare" else []))
    return {"run_id": folder.run_id, "stage": stage, "state": result.state}


def record_card(folder: Any, stage: str, gpus: list[str]) -> None:
    """Which of the GPUs a stage asked for (its fallback list) Modal gave it, as nvidia-smi names them: the
    run's cost is that card's."""
    from runner.backends.placement import local_gpus, modal_card

    got = modal_card(local_gpus(), gpus) if gpus else None
    if got:
        folder.note_stage(stage, gpu=got)


# every stage class: the project image, both Volumes, the base Secrets, a memory snapshot of the container's
# own imports (runner.backends.modal_snapshot)
STAGE = dict(image=image, volumes=VOLUMES, secrets=BASE_SECRETS, enable_memory_snapshot=True)


# prepare: downloads the base model into the pretrained Volume (network, no GPU needed).
@app.cls(**STAGE, cpu=4.0, timeout=60 * MINUTES)
class Prepare(SnapshotStage):
    @modal.method()
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return run_stage_in_container(request, "prepare")


# preprocess: tokenises into <runs>/_prepared, shared by every job with the same data and tokenizer.
@app.cls(**STAGE, cpu=4.0, timeout=60 * MINUTES)
class Preprocess(SnapshotStage):
    @modal.method()
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return run_stage_in_container(request, "preprocess")


# train: the job's GPUs (gpu group), one process per GPU; retried attempts resume from the latest
# checkpoint on the runs Volume (auto_resume_from_checkpoints).
# Modal's fallback list where the launch declares one (ModalSettings.gpu_fallbacks): the first available
STAGE_GPUS: Any = list(settings.gpu_fallbacks) or "A100-80GB"


@app.cls(**STAGE, gpu=STAGE_GPUS, timeout=12 * HOURS)
class Train(SnapshotStage):
    @modal.method()
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return run_stage_in_container(request, "train")


# merge: adapter + base → outputs/merged, on CPU with plenty of RAM (backend.merge_memory_gib) unless
# backend.merge_gpu is set. Both come with each call: with_options adds resources but never removes the
# decorator's, so CPU and memory declared here would stay on a GPU merge too.
@app.cls(**STAGE, timeout=60 * MINUTES)
class Merge(SnapshotStage):
    @modal.method()
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return run_stage_in_container(request, "merge")


# eval: generation on the held-out split with vLLM (in the image), on the job's GPUs.
@app.cls(**STAGE, gpu=STAGE_GPUS, timeout=60 * MINUTES)
class Eval(SnapshotStage):
    @modal.method()
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return run_stage_in_container(request, "eval")


STAGE_CLASSES: dict[str, modal.Cls] = {
    "prepare": Prepare, "preprocess": Preprocess, "train": Train, "merge": Merge, "eval": Eval,
}


def modal_options(options: StageOptions) -> dict[str, Any]:
    """StageOptions (plain data) → Cls.with_options keywords."""
    # a GPU named here replaces the class's: not where the class declares this call's fallback list
    resources = {"gpu": None if settings.declares(options) else options.gpu, "cpu": options.cpu,
                 "memory": options.memory_mib}
    return {
        "scaledown_window": 10,   # a container serves one stage call: don't keep GPUs idling after it
        "timeout": options.timeout_s,
        "retries": options.retries,
        "volumes": VOLUMES,
        "secrets": [modal.Secret.from_name(name) for name in options.secrets],
        **{key: value for key, value in resources.items() if value},
    }


# Modal 1.3's Cls.with_options merges into one options object shared by the class and every class derived
# from it (modal/cls.py: _initialize_from_other, merge_options), sent when an instance is first called: one
# job's GPU or Secret would stay on the next job's calls, or reach a call another sweep thread is making.
# So each instance is made from empty options, one at a time (it keeps that object; the next starts anew).
_options_lock = threading.Lock()


def stage_instance(job: dict[str, Any], stage: str) -> Any:
    """An instance of the stage's class with this job's resources, and no other job's."""
    from modal._utils.async_utils import synchronizer
    from modal.cls import _ServiceOptions

    cls = STAGE_CLASSES[stage]
    with _options_lock:
        synchronizer._translate_in(cls)._options = _ServiceOptions()
        return cls.with_options(**modal_options(StageOptions(**job["options"][stage])))()


def call_stage(job: dict[str, Any], stage: str, skipped: dict[str, str]) -> dict[str, Any]:
    options = job["options"][stage]
    gpus = [options["gpu"], *options.get("fallbacks", ())] if options["gpu"] else []
    return stage_instance(job, stage).run.remote({"run_id": job["run_id"], "stage": stage, "skipped": skipped,
                                                  "gpus": gpus})


# ---- the sweep: creates the run folders, runs every job's stages, records how each ended -------
# The sweep's threads share one view of the runs Volume (a reload needs no file open): one at a time.
_volume_lock = threading.Lock()


def create_run(job: dict[str, Any]) -> None:
    """The job's run folder on the runs Volume, from the records its launcher made (already resolved for
    this container's paths: nothing is composed or planned again here)."""
    from runner import provenance
    from runner.runfolder import RunFolder

    with _volume_lock:
        _reload(runs_volume)
        path = runs_dir() / job["run_id"]
        if (path / "status.json").exists():
            return  # a restarted sweep: the folder is already there
        run_records = dict(job["records"])
        # the launching checkout's git state and config; this container's Python and packages
        run_records["provenance.json"] = {
            **run_records["provenance.json"], "packages": provenance.package_versions(),
            "python": platform.python_version(), "host": platform.node(),
            "modal": {"app": settings.app_name, "stack": STACK.summary()}}
        RunFolder.write(path, run_records)
        _commit(runs_volume)


def finish_run(job: dict[str, Any], result: JobResult) -> None:
    """Write how the job ended into its status.json, as the local backend does."""
    from runner.runfolder import RunFolder

    with _volume_lock:
        _reload(runs_volume)
        folder = RunFolder(runs_dir() / job["run_id"])
        if not (folder.path / "status.json").exists():
            return
        for stage, reason in result.skipped.items():
            folder.set_stage(stage, "skipped", reason=reason)
        for stage, enabled in job["stages"].items():
            if not enabled:
                folder.set_stage(stage, "skipped", reason=f"turned off (stages.{stage}=false)")
        if result.state == "succeeded":
            status = folder.status()
            for key in ("failed_stage", "error"):   # left by an attempt that a retry then finished
                status.pop(key, None)
            write_json(folder.path / "status.json", status)
            folder.set_state("succeeded")
        else:
            stage_state = folder.status()["stages"].get(result.failed_stage, {}).get("state")
            if result.failed_stage in job["stages"] and stage_state != "failed":
                folder.set_stage(result.failed_stage, "failed", error=result.error)   # timed out, lost, ...
            folder.set_state("failed", failed_stage=result.failed_stage, error=result.error)
        _commit(runs_volume)


# Cheap CPU, never preempted (a restart would start its jobs over); Modal's longest timeout, since it
# waits for every job of the sweep (the launcher refuses a sweep whose worst case exceeds it: modal_bounds.py).
@app.function(image=image, volumes={RUNS_MOUNT: runs_volume}, cpu=0.25, timeout=int(SWEEP_LIMIT_H * HOURS),
              nonpreemptible=True)
def sweep(jobs: list[dict[str, Any]], max_parallel: int) -> list[dict[str, Any]]:
    return run_sweep(jobs, max_parallel, create=create_run, call_stage=call_stage, finish=finish_run,
                     log=lambda line: print(line, flush=True))
