"""Where a run came from: code version, data fingerprints, package versions, config hash."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from runner.paths import PROJECT_ROOT

PACKAGES = ("runner", "axolotl", "torch", "transformers", "peft", "accelerate", "datasets", "trl",
            "deepspeed", "bitsandbytes", "liger-kernel", "hydra-core", "omegaconf", "modal", "vllm")


def config_hash(axolotl_config: dict[str, Any]) -> str:
    canonical = json.dumps(axolotl_config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def collect(axolotl_config: dict[str, Any], data_files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "git": git_state(),
        "config_sha256": config_hash(axolotl_config),
        "data": data_files,
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
    }
