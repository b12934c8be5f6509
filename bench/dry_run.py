"""Dry-run speed: `python -m runner ... dry_run=true` against `axolotl --help` on the same machine.

Target: dry run ≤ 0.25 × `axolotl --help` (issue 12, the Hydra application; it was 0.4 before). Run from the repo root with the project's venv:
    .venv/bin/python bench/dry_run.py          # writes bench/dry_run.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRY_RUN = [sys.executable, "-m", "runner", "model=mistral", "adapter=qlora", "gpu=a100x4", "dry_run=true"]
AXOLOTL_HELP = [sys.executable, "-m", "axolotl.cli.main", "--help"]
TARGET = 0.25
# written before the run that produced bench/dry_run.json
PREDICTION = ("2026-12-01, the Hydra app: dry run 0.35-0.5 s (Hydra's plugin scan and app set-up on top of "
              "composing), axolotl --help 4-5 s, ratio 0.08-0.12")


def wall_times(cmd: list[str], repeats: int) -> list[float]:
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, cwd=ROOT, capture_output=True, env=env, check=True)  # warm the file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    dry = wall_times(DRY_RUN, 7)
    axolotl = wall_times(AXOLOTL_HELP, 5)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "dry_run_s": {"median": statistics.median(dry), "all": [round(t, 3) for t in dry]},
        "axolotl_help_s": {"median": statistics.median(axolotl), "all": [round(t, 3) for t in axolotl]},
    }
    result["ratio"] = round(result["dry_run_s"]["median"] / result["axolotl_help_s"]["median"], 3)
    result["target_ratio"] = TARGET
    result["prediction"] = PREDICTION
    (ROOT / "bench" / "dry_run.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"dry run {result['dry_run_s']['median']:.3f} s, axolotl --help {result['axolotl_help_s']['median']:.3f} s, "
          f"ratio {result['ratio']} (target ≤ {TARGET})")


if __name__ == "__main__":
    main()
