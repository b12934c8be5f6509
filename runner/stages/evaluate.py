"""eval: score the tuned model on the held-out split (placeholder until runner.evals lands)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.stages import python_module


def command(run_dir: Path, config: dict[str, Any]) -> list[str]:
    return python_module("runner.stages.evaluate", str(run_dir))


def main(run_dir: str) -> None:
    print("eval: nothing beyond the trainer's eval loss yet")


if __name__ == "__main__":
    main(*sys.argv[1:])
