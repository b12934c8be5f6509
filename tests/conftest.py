import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Offline and quiet for every test and every subprocess a test starts.
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, module: str = "runner",
            timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def plan():
    from runner.compose import expand_overrides
    from runner.plan import plan_job

    def _plan(*overrides: str):
        return plan_job(expand_overrides(list(overrides), multirun=False)[0])

    return _plan


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The embedded default, `python -m runner`, run once for the whole session (a few minutes)."""
    runs_root = tmp_path_factory.mktemp("runs")
    result = run_cli(f"runs_root={runs_root}")
    run_dirs = sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    return result, (run_dirs[0] if run_dirs else None)
