"""Work that was done already is not done again.

Jobs: a job whose resolved axolotl config, runner settings that change results (eval, stages, GPU), data
fingerprints and code version (git commit, uncommitted changes, the training packages' versions) equal
those of a succeeded run under the same runs root is reported as cached, pointing at that run, instead of
running again; `rerun=true` runs it anyway. So running a sweep again runs only what is missing.

Base-model evaluation: the eval stage scores the base model on the held-out records the same way for every
job of a sweep; its figures and predictions are kept under `<runs_root>/_eval_cache/` and reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.paths import PROJECT_ROOT
from runner.records import read_json

# What decides how a model trains, besides the axolotl config and the data.
TRAINING_PACKAGES = ("axolotl", "torch", "transformers", "peft", "accelerate", "trl", "datasets", "liger-kernel",
                     "bitsandbytes", "deepspeed", "vllm")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """This checkout's commit, a hash of its uncommitted changes, and the training packages' versions."""
    from runner.provenance import git_state, package_versions

    state = git_state()
    changes = None
    if state.get("dirty"):
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, timeout=30)
        changes = hashlib.sha256(diff.stdout).hexdigest()
    versions = package_versions()
    return {"commit": state.get("commit"), "changes": changes,
            "packages": {name: versions.get(name) for name in TRAINING_PACKAGES}}


def job_key(job: Any) -> str:
    """The cache key of a planned job (its config is resolved for the placeholder run id, so paths that
    hold the run id compare equal across runs)."""
    from runner.settings import split_config

    runner_keys, axolotl = split_config(job.config)
    return digest({
        "axolotl": axolotl,
        "runner": {"eval": runner_keys.get("eval"), "stages": runner_keys.get("stages"),
                   "gpu": (runner_keys.get("gpu") or {}).get("modal"), "model_spec": runner_keys.get("model_spec")},
        "data": {split: data.sha256 for split, data in job.data.items()},
        "code": code_version(),
    })


def cached_run(runs_root: str | Path, key: str) -> Path | None:
    """The newest succeeded run under runs_root with this cache key."""
    hits = []
    for record in Path(runs_root).glob("*/job.json"):
        job = read_json(record, {})
        if job.get("cache_key") == key and read_json(record.parent / "status.json", {}).get("state") == "succeeded":
            hits.append(record.parent)
    return max(hits, key=lambda p: p.name) if hits else None


# ---- the base model's evaluation ----------------------------------------------------------------
def base_eval_key(config: dict[str, Any], ref: Any, engine: str | None, settings: Any, records_digest: str) -> str:
    model = Path(ref.path)
    built = read_json(model / "runner-build.json", {}) if model.is_dir() else {}
    return digest({
        "model": str(ref.path), "tokenizer": ref.tokenizer, "build": built.get("fingerprint"),
        "weights": _weights_fingerprint(model), "records": records_digest, "engine": engine,
        "settings": {k: getattr(settings, k) for k in ("max_new_tokens", "batch_size", "limit", "stop", "sql_time_limit_s")},
        "template": [d.get("type") for d in config.get("datasets") or []],
        "sequence_len": config.get("sequence_len"), "train_on_inputs": config.get("train_on_inputs"),
        "packages": code_version()["packages"],
    })


def _weights_fingerprint(model: Path) -> list:
    """Names, sizes and modification times of a local model's weight files (a rebuilt model differs)."""
    if not model.is_dir():
        return []
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.glob("*.safetensors"))


def eval_cache_dir(config: dict[str, Any], key: str) -> Path:
    """Beside the runs (run_dir is absolute; the eval stage runs inside its run folder)."""
    return Path(config["run_dir"]).parent / "_eval_cache" / f"base-{key[:24]}"


# ---- tokenised data -----------------------------------------------------------------------------
# axolotl keys that do not change the tokenised dataset: optimisation, schedules, saving, logging, tracking,
# kernels, precision, adapters. A key missing here only costs a re-tokenisation; reuse is always safe,
# because the train stage loads axolotl's prepared data by axolotl's own hash, and tokenises itself when
# that differs.
NOT_DATA = {
    "output_dir", "learning_rate", "optimizer", "lr_scheduler", "warmup_ratio", "warmup_steps", "weight_decay",
    "max_grad_norm", "num_epochs", "max_steps", "micro_batch_size", "gradient_accumulation_steps",
    "eval_batch_size", "logging_steps", "evals_per_epoch", "eval_steps", "saves_per_epoch", "save_steps",
    "save_total_limit", "save_safetensors", "save_strategy", "eval_strategy", "auto_resume_from_checkpoints",
    "resume_from_checkpoint", "gradient_checkpointing", "bf16", "fp16", "tf32", "adapter", "load_in_4bit",
    "load_in_8bit", "deepspeed", "attn_implementation", "plugins", "torch_compile", "use_mlflow", "strict",
    "early_stopping_patience", "neftune_noise_alpha", "ddp_find_unused_parameters",
}
NOT_DATA_PREFIXES = ("lora_", "peft_", "wandb_", "mlflow_", "hf_mlflow_", "liger_", "adam_", "lr_", "loraplus_")


def prepared_key(axolotl_config: dict[str, Any], data_sha256: dict[str, str]) -> str:
    """Same tokenised data? The one answer, on every backend: a run folder's key on this machine and in
    Modal's stage containers (runner/prepared.py: reuse, the tokenising lock), and a Modal sweep's groups of
    jobs that tokenise once (runner/backends/modal_launcher.py, modal_bounds.py). What decides the tokens:
    the data, the tokenizer, the data settings, axolotl's version."""
    settings = {k: v for k, v in axolotl_config.items() if k not in NOT_DATA and not k.startswith(NOT_DATA_PREFIXES)}
    tokenizer = Path(str(axolotl_config.get("tokenizer_config") or axolotl_config.get("base_model") or ""))
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tokenizer.glob("tokenizer*")) if tokenizer.is_dir() else []
    return digest({"settings": settings, "data": data_sha256, "tokenizer": files, "axolotl": _axolotl_version()})


@lru_cache(maxsize=1)
def _axolotl_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("axolotl")
    except PackageNotFoundError:
        return None


# What a job's preprocess stage does, decided here for every backend: on this machine and in Modal's stage
# containers (runner/pipeline.py, runner/prepared.py's lock) and for a Modal sweep's jobs
# (runner/backends/modal_sweep.py, where the first job of a data key tokenises for the others).
WAIT, REUSE, FOLD, RUN = "wait for another job", "reuse", "fold into train", "run"


def preprocess_decision(*, tokenising_elsewhere: bool = False, tokens_ready: bool = False,
                        folds_into_train: bool = False) -> str:
    """wait: another job is tokenising the same data key (decide again once it is done); reuse: tokens of
    this key are there already; fold into train: the train stage follows in one process, which tokenises
    itself (one process start-up less); run: tokenise now."""
    if tokenising_elsewhere:
        return WAIT
    if tokens_ready:
        return REUSE
    if folds_into_train:
        return FOLD
    return RUN


def prepared_marker(axolotl_config: dict[str, Any], key: str) -> Path:
    return Path(str(axolotl_config["dataset_prepared_path"])) / "_runner" / f"{key[:24]}.json"
