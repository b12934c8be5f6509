"""Run folders under a runs root, one found by its id or a unique prefix, and the backend that ran one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.backends.modal_records import modal_record
from runner.errors import UserError, did_you_mean
from runner.records import flatten, read_json
from runner.runfolder import RunFolder


def run_folders(root: Path) -> list[RunFolder]:
    if not root.is_dir():
        return []
    return [RunFolder(p.resolve()) for p in sorted(root.iterdir()) if (p / "job.json").is_file()]


def find_run(root: Path, name: str) -> RunFolder:
    folders = run_folders(root)
    ids = [f.run_id for f in folders]
    matches = [f for f in folders if f.run_id == name] or [f for f in folders if f.run_id.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"run '{name}' is ambiguous: {', '.join(f.run_id for f in matches[:5])}")
    if not ids:
        raise UserError(f"no runs under {root} (set --runs-root DIR)")
    hint = did_you_mean(name, ids) or " (see `python -m runner.runs list`)"
    raise UserError(f"no run '{name}' under {root}{hint}")


def backend_of(folder: RunFolder) -> str:
    job = read_json(folder.path / "job.json", {})
    return (job.get("compute") or {}).get("backend") or ("modal" if modal_record(folder.path) else "local")


def settings_of(folder: RunFolder) -> dict[str, Any]:
    """The composed config, flat, with this run's id replaced (run_dir, output_dir, tracker run names)."""
    flat = flatten(folder.composed())
    return {key: (value.replace(folder.run_id, "<run>") if isinstance(value, str) else value)
            for key, value in flat.items() if key not in ("run_id", "run_dir")}
