"""One whole job through the Modal app's own stage functions, run in-process (`.local()`), on a GPU machine.

What a Modal run does, minus Modal's scheduling: the job is planned exactly as `python -m runner
backend=modal ...` plans it, then the app's `sweep` body (runner.backends.modal_sweep.run_sweep) creates
the run folder with `create_run` and calls each stage class's `run` — here with `.local()` instead of
`.remote()` — then `finish_run`. The runs and pretrained Volumes are local folders
(RUNNER_MODAL_RUNS_DIR, RUNNER_MODAL_PRETRAINED_DIR), as in tests/test_modal_local.py on the CPU. The
packages are the lock's (bench/stack_wheels.py), so this is the image's software on the image's GPU.

    python3 bench/modal_local.py --base-model /tmp/bench/llama7b-random --out $OUT/modal-local.json \
        model=llama2 gpu=h200 eval.engine=vllm

Writes per-stage wall times (each `.local()` call, and the stage's own start/end from status.json), the
eval engine and figures, train metrics, and the package versions the run folder's provenance recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", help="a local model folder (default: the model group's)")
    parser.add_argument("--work", default="/tmp/bench/modal", help="holds the runs and pretrained 'Volumes'")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--continue-run", metavar="RUN_ID",
                        help="run the stages of this run that have not succeeded (e.g. after a fix), then finish it")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    work = Path(args.work)
    os.environ["RUNNER_MODAL_RUNS_DIR"] = str(work / "runs")
    os.environ["RUNNER_MODAL_PRETRAINED_DIR"] = str(work / "pretrained")

    from runner.backends import modal_app
    from runner.backends.modal_launcher import job_request
    from runner.backends.modal_sweep import run_sweep
    from runner.compose import expand_overrides
    from runner.plan import plan_job
    from runner.records import read_json, stage_seconds
    from runner.runfolder import new_run_id

    overrides = ["backend=modal", *([f"base_model={args.base_model}"] if args.base_model else []), *args.overrides]
    job = plan_job(expand_overrides(overrides, multirun=False)[0])
    run_id = new_run_id(job.choices, "modal-local")
    request = job_request(job, 1, run_id, modal_app.runs_dir(), modal_app.pretrained_dir())
    calls: dict[str, float] = {}

    def call_stage(job_request_: dict, stage: str, skipped: dict[str, str]) -> dict:
        started = time.monotonic()
        try:
            return modal_app.STAGE_CLASSES[stage]().run.local({"run_id": run_id, "stage": stage, "skipped": skipped})
        finally:
            calls[stage] = round(time.monotonic() - started, 1)
            print(f"=== {stage}: {calls[stage]} s", flush=True)

    started = time.monotonic()
    if args.continue_run:
        from runner.backends.modal_sweep import JobResult

        run_id = request["run_id"] = args.continue_run
        done = read_json(work / "runs" / run_id / "status.json", {}).get("stages", {})
        result = JobResult(1, run_id)
        for stage in (s for s, enabled in request["stages"].items() if enabled):
            if done.get(stage, {}).get("state") != "succeeded":
                call_stage(request, stage, {})
        modal_app.finish_run(request, result)
        result = result.to_dict()
    else:
        (result,) = run_sweep([request], 1, create=modal_app.create_run, call_stage=call_stage,
                              finish=modal_app.finish_run, log=lambda line: print(line, flush=True))
    total = round(time.monotonic() - started, 1)

    folder = work / "runs" / run_id
    status, metrics = read_json(folder / "status.json", {}), read_json(folder / "metrics.json", {})
    stages = {}
    for stage, entry in status.get("stages", {}).items():
        row = {"state": entry.get("state"), "local_call_s": calls.get(stage)}
        if stage_seconds(entry) is not None:
            row["stage_s"] = stage_seconds(entry)
        stages[stage] = row
    eval_record = metrics.get("eval") or {}
    report = {
        "date": datetime.now(timezone.utc).date().isoformat(),
        "gpu": gpu_name(),
        "run_id": run_id,
        "command": "python -m runner " + " ".join(overrides),
        "result": result,
        "total_s": total,
        "stages": stages,
        "train": {k: metrics.get(k) for k in ("train_loss", "eval_loss", "train_runtime_s", "train_samples_per_second")},
        "eval": {k: v for k, v in eval_record.items() if k != "summary_lines"},
        "packages": (read_json(folder / "provenance.json", {}) or {}).get("packages"),
        "stack": modal_app.STACK.summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("result", "total_s", "stages")}, indent=1))
    print("eval engine:", eval_record.get("engine"), "| base:", eval_record.get("base"), "| tuned:", eval_record.get("tuned"))
    return 0 if result["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
