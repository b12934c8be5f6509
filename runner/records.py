"""Atomic writes of run-folder records: a crash leaves the old record or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


def stage_seconds(entry: dict[str, Any]) -> float | None:
    """Wall seconds of one status.json stage entry (started → ended), or None while it has not ended."""
    from datetime import datetime

    try:
        started, ended = datetime.fromisoformat(entry["started"]), datetime.fromisoformat(entry["ended"])
    except (KeyError, TypeError, ValueError):
        return None
    return max((ended - started).total_seconds(), 0.0)


def override_pairs(overrides: list[str] | None) -> dict[str, str]:
    """`key=value` overrides as typed (`++lora_r=8`) → {"lora_r": "8"}; sweeps' and groups' alike."""
    pairs = {}
    for item in overrides or []:
        key, sep, value = str(item).partition("=")
        if sep:
            pairs[key.lstrip("+~")] = value
    return pairs


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config or record as one level of dotted keys."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}
