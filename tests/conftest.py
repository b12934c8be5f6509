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
# The suite sees no GPU, on a GPU host too (torch and the runner's placement both read this): tests that need
# GPUs fake them where the runner looks (tests/fakes/nvidia_smi.py, torch.cuda monkeypatched).
os.environ["CUDA_VISIBLE_DEVICES"] = ""


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, module: str = "runner",
            timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def shared_sqlqa() -> Path | None:
    """The 3 000 real text-to-SQL records beside the repository (../shared/data/sqlqa.jsonl), or beside the
    repository this one was cloned from (a clean clone made elsewhere, as CI makes it); None if neither."""
    candidates = [ROOT.parent / "shared" / "data" / "sqlqa.jsonl"]
    origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        candidates.append(Path(origin).resolve().parent / "shared" / "data" / "sqlqa.jsonl")
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture
def real_sqlqa() -> Path:
    path = shared_sqlqa()
    if path is None:
        pytest.skip("the shared real text-to-SQL records (../shared/data/sqlqa.jsonl) are not beside this checkout")
    return path


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
def large_data(tmp_path_factory) -> Path:
    """The shipped training records repeated to 21 000: data enough to fill a 7B's throughput micro batches
    (small data gets smaller steps: runner/schedule.py)."""
    from runner.paths import data_file

    lines = Path(data_file("sqlqa-train.jsonl")).read_text().splitlines()
    path = tmp_path_factory.mktemp("data") / "large.jsonl"
    path.write_text("\n".join(lines * (21000 // len(lines))) + "\n")
    return path


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The embedded default, `python -m runner`, run once for the whole session (a few minutes)."""
    runs_root = tmp_path_factory.mktemp("runs")
    result = run_cli(f"runs_root={runs_root}")
    run_dirs = sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    return result, (run_dirs[0] if run_dirs else None)


def wait_for_train_steps(runs_root: Path, process: subprocess.Popen, steps: int = 2, timeout: float = 600) -> None:
    """Until the (first) run under `runs_root` has logged `steps` trainer steps, or its runner ended."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        logs = [p.read_text() for p in Path(runs_root).glob("*/logs/train.log")]
        if logs and logs[0].count("'loss'") >= steps:
            return
        time.sleep(0.2)
