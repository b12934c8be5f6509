"""The Modal backend's settings, read from a job's composed config: plain data, no `import modal`.

Two kinds of settings:
  * app-wide (`ModalSettings`): the app name, images, volume and secret names. Modal fixes them when the
    app is declared, so every job of one sweep must agree on them.
  * per job and stage (`StageOptions`): GPU, CPU/memory, timeout, retries, secrets. They are applied to
    each call with `Cls.with_options`, so `-m gpu=a100x2,h100x4` gives each job its own GPUs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from runner.compute import MODAL_GPU_TYPES, parse_modal_gpu
from runner.errors import UserError
from runner.settings import STAGES

MAX_TIMEOUT_H = 24          # Modal's limit on one function call
MAX_RETRIES = 10            # Modal's limit
CPU_STAGE = {"cpu": 4.0, "memory_mib": 16 * 1024}   # prepare, preprocess: downloads and tokenising
# Where the containers mount the Volumes: base models (the HF hub cache) and run folders (the runs root)
PRETRAINED_MOUNT, RUNS_MOUNT = "/pretrained", "/runs"


@dataclass(frozen=True)
class ModalSettings:
    """What the Modal app is declared with (runner/backends/modal_app.py reads these). The image is not a
    setting: it is the project's lock (runner/stack/gpu.lock)."""

    app_name: str
    pretrained_volume: str
    runs_volume: str
    hf_secret: str | None
    wandb_secret: str | None
    # Modal's GPU fallback list ([gpu, *gpu.fallbacks]) for the train and eval classes: Modal 1.3 takes a list
    # only where a class is declared (Cls.with_options takes one GPU), so it is declared when every job of the
    # launch asks for the same list; empty: each call names its own GPU.
    gpu_fallbacks: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModalSettings:
        values = json.loads(text)
        return cls(**{**values, "gpu_fallbacks": tuple(values.get("gpu_fallbacks") or ())})

    def declares(self, options: StageOptions) -> bool:
        """Does the stage's class declare this call's GPU list (so the call must not name a GPU)?"""
        return bool(options.fallbacks) and (options.gpu, *options.fallbacks) == self.gpu_fallbacks


@dataclass(frozen=True)
class StageOptions:
    """One stage's Modal resources for one job: what `Cls.with_options` receives."""

    gpu: str | None           # Modal GPU string, e.g. "A100-80GB:4"; None: CPU only
    cpu: float | None
    memory_mib: int | None
    timeout_s: int
    retries: int
    secrets: tuple[str, ...]  # Modal Secret names
    fallbacks: tuple[str, ...] = ()   # GPU strings to take instead when `gpu`'s are not available, in order


def _backend(config: dict[str, Any]) -> dict[str, Any]:
    return config["backend"]   # its keys and types were checked against runner/schema/backend.py


def app_settings(config: dict[str, Any]) -> ModalSettings:
    backend = _backend(config)
    volumes, secrets = backend.get("volumes") or {}, backend.get("secrets") or {}
    for name in ("pretrained", "runs"):
        if not volumes.get(name):
            raise UserError(f"backend.volumes.{name} must name a Modal Volume")
    return ModalSettings(
        app_name=str(backend["app_name"]),
        pretrained_volume=str(volumes["pretrained"]),
        runs_volume=str(volumes["runs"]),
        hf_secret=secrets.get("huggingface") or None,
        wandb_secret=secrets.get("wandb") or None,
    )


def uses_wandb(config: dict[str, Any]) -> bool:
    return bool(config.get("wandb_project")) or bool(config.get("use_wandb"))


def secret_names(config: dict[str, Any], stage: str) -> tuple[str, ...]:
    """The HF token for every stage (gated downloads, hub access); the W&B key where metrics are logged."""
    settings = app_settings(config)
    names = [settings.hf_secret] if settings.hf_secret else []
    if stage in ("train", "eval") and uses_wandb(config):
        if not settings.wandb_secret:
            raise UserError("tracking=wandb on Modal needs a Secret holding WANDB_API_KEY: set backend.secrets.wandb=NAME")
        names.append(settings.wandb_secret)
    return tuple(names)


def _gpu(spec: str | None, key: str) -> str | None:
    if spec is None:
        return None
    try:
        name, count = parse_modal_gpu(str(spec))
    except UserError as e:
        raise UserError(f"{key}: {e} (Modal GPUs: {', '.join(MODAL_GPU_TYPES)})") from None
    return name if count == 1 else f"{name}:{count}"


def _minutes(backend: dict[str, Any], stage: str) -> int:
    return int(backend["timeouts_min"][stage] * 60)   # within Modal's 24 h: runner/schema/backend.py RANGES


def stage_options(config: dict[str, Any]) -> dict[str, StageOptions]:
    """Every stage's resources for this job, validated here, before anything is sent to Modal."""
    backend = _backend(config)
    train_gpu = _gpu(config["gpu"].get("modal"), "gpu.modal")
    if train_gpu is None:
        raise UserError("backend=modal needs a GPU: choose a gpu option (e.g. gpu=a100), not gpu=cpu")
    # the node's types and ranges were checked when it was composed (runner/schema/backend.py); Modal's own
    # limit on one call is 24 h, and the train stage needs one (Slurm takes longer or none)
    timeout_h, retries = backend.get("timeout_h"), backend["retries"]
    if timeout_h is None or timeout_h > MAX_TIMEOUT_H:
        raise UserError(f"backend.timeout_h must be more than 0 and at most {MAX_TIMEOUT_H} on Modal (its limit "
                        f"on one call), got {timeout_h!r}")
    fallbacks = _fallbacks(config["gpu"].get("fallbacks") or [], train_gpu)
    merge_gpu = _gpu(backend.get("merge_gpu"), "backend.merge_gpu")
    eval_gpu = _gpu(backend.get("eval_gpu"), "backend.eval_gpu")
    memory_gib = backend["merge_memory_gib"]

    def opts(stage: str, gpu: str | None, cpu: float | None = None, memory_mib: int | None = None,
             timeout_s: int | None = None, stage_retries: int = 0, stand_ins: tuple[str, ...] = ()) -> StageOptions:
        return StageOptions(gpu=gpu, cpu=cpu, memory_mib=memory_mib, timeout_s=timeout_s or _minutes(backend, stage),
                            retries=stage_retries, secrets=secret_names(config, stage), fallbacks=stand_ins)

    return {
        "prepare": opts("prepare", None, **CPU_STAGE),
        "preprocess": opts("preprocess", None, **CPU_STAGE),
        "train": opts("train", train_gpu, timeout_s=int(timeout_h * 3600), stage_retries=retries, stand_ins=fallbacks),
        "merge": (opts("merge", merge_gpu) if merge_gpu else
                  opts("merge", None, cpu=8.0, memory_mib=int(memory_gib * 1024))),
        # the eval stage runs on the job's GPUs (and their stand-ins) unless backend.eval_gpu names others
        "eval": opts("eval", eval_gpu) if eval_gpu else opts("eval", train_gpu, stand_ins=fallbacks),
    }


def _fallbacks(listed: list[Any], train_gpu: str) -> tuple[str, ...]:
    """gpu.fallbacks as Modal GPU strings, each with as many GPUs as the job trains on (one process each)."""
    count = parse_modal_gpu(train_gpu)[1]
    stand_ins = []
    for entry in listed:
        gpu = _gpu(entry, "gpu.fallbacks")
        if parse_modal_gpu(gpu)[1] != count:
            raise UserError(f"gpu.fallbacks: {entry} has {parse_modal_gpu(gpu)[1]} GPU(s) and the job trains on "
                            f"{count} ({train_gpu}): a stand-in must have as many (e.g. {gpu.partition(':')[0]}"
                            f"{f':{count}' if count > 1 else ''})")
        if gpu != train_gpu:
            stand_ins.append(gpu)
    return tuple(dict.fromkeys(stand_ins))


def max_parallel(config: dict[str, Any]) -> int:
    return int(_backend(config)["max_parallel"])


def poll_seconds(config: dict[str, Any]) -> float:
    return float(_backend(config).get("poll_s") or 15)


# -- jobs that can share work --------------------------------------------------------------------
# prepare fetches the base model into the shared "pretrained" Volume: one job per model goes first. (The
# jobs that tokenise once share runner/cache.py's prepared_key, as runs on this machine do.)
MODEL_KEYS = ("base_model", "base_model_config", "tokenizer_config", "revision_of_model")


def _key(config: dict[str, Any], keys: tuple[str, ...], extra: Any = None) -> str:
    picked = {k: config.get(k) for k in keys}
    text = json.dumps([picked, extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_key(config: dict[str, Any]) -> str:
    return _key(config, MODEL_KEYS, (config.get("model_spec") or {}).get("build"))


def describe_stages(config: dict[str, Any]) -> str:
    """Each enabled stage's resources in words, as the containers get them (the dry run's)."""
    parts, enabled = [], enabled_stages(config)
    for stage, opts in stage_options(config).items():
        if not enabled[stage]:
            continue
        where = opts.gpu or f"CPU ({opts.cpu:g} cores, {opts.memory_mib // 1024} GiB)"
        where += "".join(f" or {gpu}" for gpu in opts.fallbacks)
        limit = f"{opts.timeout_s / 3600:g} h" if opts.timeout_s >= 3600 else f"{opts.timeout_s // 60} min"
        attempts = f" × {opts.retries + 1} attempts" if opts.retries else ""
        parts.append(f"{stage} {where}, {limit}{attempts}")
    return "; ".join(parts)


def enabled_stages(config: dict[str, Any]) -> dict[str, bool]:
    enabled = config.get("stages") or {}
    return {stage: bool(enabled.get(stage, True)) for stage in STAGES}
