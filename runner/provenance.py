"""Where a run came from: code version, data fingerprints, package versions, config hash."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from runner.paths import PROJECT_ROOT

PACKAGES = ("runner", "axolotl", "torch", "transformers", "peft", "accelerate", "datasets", "trl",
            "deepspeed", "bitsandbytes", "liger-kernel", "hydra-core", "omegaconf", "modal", "vllm")


def config_hash(axolotl_config: dict[str, Any]) -> str:
    canonical = json.dumps(axolotl_config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def git_state(folder: str | Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the git repository holding `folder` (None where there is none)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    top = git("rev-parse", "--show-toplevel")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "repo": top}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def config_repos(sources: list[str], choices: dict[str, Any]) -> list[dict[str, Any]]:
    """The git state of each config folder besides ours (a team's own --config-dir), and which one holds
    the experiment: a run is reproducible only with both commits."""
    ours = Path(PROJECT_ROOT).resolve()
    repos = []
    for source in sources:
        folder = Path(source.removeprefix("file://")).resolve()
        if folder == ours / "conf" or not folder.is_dir():
            continue
        entry = {"config_dir": str(folder), "git": git_state(folder)}
        experiment = choices.get("experiment")
        if experiment and (folder / "experiment" / f"{experiment}.yaml").is_file():
            entry["experiment"] = str(folder / "experiment" / f"{experiment}.yaml")
        repos.append(entry)
    return repos


def collect(axolotl_config: dict[str, Any], data_files: dict[str, dict[str, Any]], config_sources: list[str] = (),
            choices: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "git": git_state(),
        "config_repos": config_repos(list(config_sources), choices or {}),
        "config_sha256": config_hash(axolotl_config),
        "data": data_files,
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
    }
