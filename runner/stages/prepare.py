"""prepare: make the base model available locally: build the tiny model or download from the hub."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.stages import python_module


def command(run_dir: Path, config: dict[str, Any]) -> list[str] | None:
    if _local_folder(config):   # nothing to fetch or build: no process to start (0.3 s before the train stage)
        return None
    return python_module("runner.stages.prepare", str(run_dir))


def _local_folder(config: dict[str, Any]) -> bool:
    return config["model_spec"].get("build") != "tiny" and Path(config["base_model"]).expanduser().is_dir()


def prepare(config: dict[str, Any]) -> str:
    base_model, spec = config["base_model"], config["model_spec"]
    if spec.get("build") == "tiny":
        from runner.models import tiny

        path = tiny.build(Path(base_model), spec)
        print(f"tiny model ready at {path}")
        return str(path)
    if _local_folder(config):
        print(f"base model is a local folder: {base_model}")
        return base_model
    from runner.models import hub

    path = hub.download(base_model, config["cache_dir"], hub.token_place(config.get("backend")))
    print(f"{base_model} ready at {path}")
    return str(path)


def main(run_dir: str) -> int:
    from runner.errors import UserError, report
    from runner.runfolder import RunFolder

    try:
        prepare(RunFolder(Path(run_dir)).composed())
    except UserError as e:
        # the last line of the stage's output: the pipeline shows it to the user as the reason
        sys.stdout.flush()
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
