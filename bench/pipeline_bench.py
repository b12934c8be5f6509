"""Time to result: the whole pipeline, start to summary, per stage, through `python -m runner` itself.

    python bench/pipeline_bench.py --out results.jsonl --runs-root /tmp/pipe NAME=OVERRIDES ... [--deadline S]

Each NAME=OVERRIDES (overrides separated by spaces) is one `python -m runner` invocation; for each the
script writes one JSON line: the wall time from start to exit, each stage's wall time from the run folder's
status.json (started → ended), how the preprocess stage ended (ran, reused, or "in train": folded into a
one-process train stage), the train stage's own figures (train_runtime, in-training eval count and time,
trainable tokens/s where logged), the eval stage's figures, and the exit code. Examples (bench/RESULTS.md §9):

    # the goal's workload on one H200, the default recipe and the seed's, in the same run
    python bench/pipeline_bench.py --out $OUT/pipeline.jsonl --runs-root /tmp/pipe \
        "default=model=llama2 base_model=/tmp/bench/llama7b-random gpu=h200" \
        "seed=model=llama2 base_model=/tmp/bench/llama7b-random gpu=h200 recipe=seed"
    # the README default on this machine's CPU
    python bench/pipeline_bench.py --out bench/results/pipeline-cpu.jsonl --runs-root /tmp/pipe "cpu="
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.records import stage_seconds  # noqa: E402


def preprocess_outcome(entry: dict) -> str:
    return "reused" if entry.get("reused") else "in train" if entry.get("folded") == "train" else "ran"


def train_figures(run: Path) -> dict:
    history_file = run / "logs" / "train_history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    evals = [r for r in history if "eval_runtime" in r]
    summary = next((r for r in history if "train_runtime" in r), {})
    speeds = [r["tokens/train_per_sec_per_gpu"] for r in history if isinstance(r.get("tokens/train_per_sec_per_gpu"), (int, float))]
    return {"train_runtime_s": summary.get("train_runtime"), "in_training_evals": len(evals),
            "in_training_eval_s": round(sum(r["eval_runtime"] for r in evals), 1),
            "steps_logged": len([r for r in history if "loss" in r]),
            "trainable_tokens_per_s_last": speeds[-1] if speeds else None,
            "train_loss_last": next((r["loss"] for r in reversed(history) if "loss" in r), None)}


def one(name: str, overrides: list[str], runs_root: Path, timeout: float) -> dict:
    before = {p.name for p in runs_root.glob("*/job.json")} if runs_root.is_dir() else set()
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "runner", *overrides, f"runs_root={runs_root}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout)
        code, tail = result.returncode, (result.stdout + result.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        code, tail = "timeout", str(e)[-500:]
    wall = time.monotonic() - started
    new = sorted(p.parent for p in runs_root.glob("*/job.json") if p.parent.name not in before)
    line = {"name": name, "overrides": overrides, "wall_s": round(wall, 1), "exit": code}
    if new:
        run = new[-1]
        status = json.loads((run / "status.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        line.update(run_id=run.name, state=status.get("state"),
                    stages={k: round(s, 1) for k, e in status["stages"].items() if (s := stage_seconds(e)) is not None},
                    preprocess=preprocess_outcome(status["stages"].get("preprocess") or {}),
                    train=train_figures(run),
                    eval={k: v for k, v in (metrics.get("eval") or {}).items() if k in ("engine", "seconds", "n", "base", "tuned")})
    if code != 0:
        line["tail"] = tail
    return line


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs", nargs="+", help="NAME=OVERRIDES (space-separated overrides)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs-root", required=True)
    parser.add_argument("--deadline", type=float, default=3600, help="seconds for all jobs; a job not started by then is skipped")
    args = parser.parse_args()
    started = time.monotonic()
    runs_root = Path(args.runs_root).resolve()
    for job in args.jobs:
        name, _, text = job.partition("=")
        left = args.deadline - (time.monotonic() - started)
        if left < 30:
            print(f"{name}: skipped (deadline)", flush=True)
            continue
        line = one(name, text.split(), runs_root, left)
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps({k: line.get(k) for k in ("name", "wall_s", "exit", "stages", "preprocess")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
