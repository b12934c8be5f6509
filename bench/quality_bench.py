"""Time to quality: what the model learns per wall-second, the runner against TRL's SFTTrainer (the peer),
on a real pretrained model and real data, on one machine in one session.

    python bench/quality_bench.py --model DIR --data DIR --out results.jsonl --plot curve.png \
        "default=runner:" "seed=runner:recipe=seed" "trl=trl:all_linear" "before=before:" ...

Each entry is NAME=KIND:ARGS, run one after another, each timed from its process start to its scored
result (the process's exit):
- runner:OVERRIDES  `python -m runner model=smollm2 base_model=DIR dataset.path=… dataset.test_path=…
  OVERRIDES` in a fresh runs root (a project's first job: it tokenises and scores the base model too;
  `model=NAME` among the overrides replaces the model group; `gpu=` is this machine's card, backend=local);
- before:OVERRIDES  the same with the tree given by --before (the code before a change: `git archive`);
- trl:SETTING       bench/peer_trl.py (quickstart | all_linear), same token ids, same scorer.
The runner's held-out loss curve is its in-training evaluation (axolotl's eval_loss on the same held-out
records, timed when the line reached the runner: `wall_s` in logs/train_history.json; a tree without those
times gets them spread evenly over its train stage, marked estimated), its last point the eval stage's
own figure (runner.evals.loss, the function the peer is scored with). One JSON line per run, the scored
answers in predictions/NAME.jsonl beside it (bench/quality_compare.py bootstraps differences from them);
--plot draws every run's held-out loss against seconds since its start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _epoch_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def this_gpu() -> str:
    """The gpu option of the card here (h100 or h200), so that backend=local runs on it."""
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout
    except OSError:
        return "cpu"
    return "h200" if "H200" in name else "h100" if "H100" in name else "cpu"


def runner_run(name: str, tree: Path, overrides: str, model: str, data: Path, runs_root: Path, log: Path,
               predictions: Path) -> dict:
    chosen = overrides.split()
    group = [] if any(o.startswith("model=") for o in chosen) else ["model=smollm2"]
    if not any(o.startswith("gpu=") for o in chosen):
        group += [f"gpu={this_gpu()}", "backend=local"]
    args = [*group, f"base_model={model}", f"dataset.path={data / 'train.jsonl'}",
            f"dataset.test_path={data / 'test.jsonl'}", f"runs_root={runs_root}", *chosen]
    started = time.time()
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)})
    wall = time.time() - started
    line: dict = {"name": name, "runner": "runner" if tree == ROOT else "before", "overrides": overrides,
                  "returncode": done.returncode, "wall_s": round(wall, 2)}
    runs = sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if done.returncode != 0 or not runs:
        return line
    run = runs[-1]
    if (run / "eval" / "predictions-tuned.jsonl").is_file():
        predictions.parent.mkdir(parents=True, exist_ok=True)
        predictions.write_bytes((run / "eval" / "predictions-tuned.jsonl").read_bytes())
    metrics = json.loads((run / "metrics.json").read_text())
    status = json.loads((run / "status.json").read_text())
    history = json.loads((run / "logs" / "train_history.json").read_text())
    config = yaml.safe_load((run / "config.yml").read_text())
    tuned = metrics["eval"]["tuned"]
    train = status["stages"]["train"]
    train_start = train.get("started_at") or _epoch_seconds(train["started"])
    train_end = train.get("ended_at") or _epoch_seconds(train["ended"])
    evals = [r for r in history if isinstance(r.get("eval_loss"), float)]
    epochs = float(config.get("num_epochs") or 1)
    curve = []
    for record in evals:
        if "wall_s" in record:
            at = train_start + record["wall_s"]
        else:   # spread over the train stage by epoch (the tree before the change logged no times)
            at = train_start + (train_end - train_start) * min(1.0, float(record.get("epoch", 0)) / epochs)
        curve.append({"epoch": record.get("epoch"), "wall_s": round(at - started, 2), "eval_loss": record["eval_loss"],
                      **({} if "wall_s" in record else {"estimated": True})})
    curve.append({"epoch": epochs, "wall_s": round(wall, 2), "eval_loss": tuned["eval_loss"], "eval_stage": True})
    first_step = next((r["wall_s"] for r in history if "loss" in r and "wall_s" in r), None)
    base = (metrics["eval"].get("base") or {}).get("eval_loss")
    if (not evals or float(evals[0].get("epoch") or 0) > 0) and base is not None and first_step is not None:
        # no evaluation before step 1 (runner.integrations.startup): the eval stage's base figure starts the curve
        curve.insert(0, {"epoch": 0.0, "wall_s": round(train_start + first_step - started, 2), "eval_loss": base,
                         "eval_stage": True})
    stages = {s: round((v.get("ended_at") or _epoch_seconds(v["ended"])) - (v.get("started_at") or _epoch_seconds(v["started"])), 1)
              for s, v in status["stages"].items() if v.get("started") and v.get("ended")}
    line.update(run_id=run.name, curve=curve, eval_loss=tuned["eval_loss"],
                execution_accuracy=tuned.get("execution_accuracy"), exact_match=tuned.get("exact_match"),
                base=metrics["eval"].get("base"), steps=sum(isinstance(r.get("loss"), float) for r in history),   # logging_steps: 1
                first_step_s=round(train_start + first_step - started, 2) if first_step is not None else None,
                startup=metrics.get("startup"), stages_s=stages, train_runtime_s=metrics.get("train_runtime_s"),
                settings={k: config.get(k) for k in ("num_epochs", "learning_rate", "micro_batch_size", "sequence_len",
                                                     "lora_r", "lora_alpha", "lr_scheduler", "sample_packing")})
    return line


def trl_run(name: str, setting: str, model: str, data: Path, out: Path, log: Path, predictions: Path) -> dict:
    scratch = out.with_name(out.name + f".{name}.tmp")
    scratch.unlink(missing_ok=True)
    started = time.time()
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "peer_trl.py"), "--model", model, "--data", str(data),
                               "--setting", setting, "--name", name, "--out", str(scratch),
                               "--predictions", str(predictions)],
                              stdout=handle, stderr=subprocess.STDOUT)
    wall = time.time() - started
    line = json.loads(scratch.read_text().splitlines()[-1]) if scratch.is_file() else {"name": name}
    scratch.unlink(missing_ok=True)
    # the peer's own clock starts after the interpreter: the process's wall time is the figure that compares
    line.update(returncode=done.returncode, wall_s=round(wall, 2), process_wall_s=line.get("wall_s"))
    if line.get("curve"):
        line["curve"].append({"epoch": line["curve"][-1]["epoch"], "wall_s": round(wall, 2),
                              "eval_loss": line["eval_loss"], "eval_stage": True})
    return line


def plot(lines: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    # the base model's held-out loss (the eval stage's, on the same records): every curve starts there and
    # stays there until its first optimizer step
    shared_base = next(((l.get("base") or {}).get("eval_loss") for l in lines if (l.get("base") or {}).get("eval_loss")),
                       None)
    for line in lines:
        curve = line.get("curve") or []
        if not curve:
            continue
        base = (line.get("base") or {}).get("eval_loss") or shared_base
        xs, ys = [p["wall_s"] for p in curve], [p["eval_loss"] for p in curve]
        if base is not None:   # a tree that logged no times: straight from the start to its (estimated) points
            start = [0.0, line["first_step_s"]] if line.get("first_step_s") is not None else [0.0]
            xs, ys = [*start, *xs], [base] * len(start) + ys
        style = "--" if line.get("runner") == "trl" else ":" if line.get("runner") == "before" else "-"
        label = (f"{line['name']}: {line['eval_loss']:.3f}, exec acc {line.get('execution_accuracy') or 0:.3f}, "
                 f"{line['wall_s']:.0f} s")
        drawn = ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
        ax.plot([xs[-1]], [ys[-1]], marker="*", markersize=12, color=drawn[0].get_color())
    ax.set_xlabel("seconds since the process started (flat start: until the first optimizer step; "
                  "stars: the scored result)")
    ax.set_ylabel("held-out loss (answer tokens)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--title", default="held-out loss against wall time")
    parser.add_argument("--before", type=Path, help="the tree before the change, for before: entries")
    parser.add_argument("--logs", type=Path, default=None, help="a folder for each run's console output")
    parser.add_argument("--deadline", type=float, default=1e9, help="seconds: start no entry after this")
    parser.add_argument("--plot-only", action="store_true", help="only draw --plot from --out")
    parser.add_argument("entries", nargs="*")
    args = parser.parse_args()
    if args.plot_only:
        plot([json.loads(l) for l in args.out.read_text().splitlines() if l.strip()], args.plot, args.title)
        return 0
    began = time.monotonic()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="quality-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    data = args.data.resolve()
    for entry in args.entries:
        if time.monotonic() - began > args.deadline:
            print(f"deadline: {entry} not started", flush=True)
            break
        name, _, rest = entry.partition("=")
        kind, _, rest = rest.partition(":")
        log = logs / f"{name}.log"
        predictions = args.out.parent / "predictions" / f"{name}.jsonl"
        if kind == "trl":
            line = trl_run(name, rest, args.model, data, args.out, log, predictions)
        elif kind in ("runner", "before"):
            tree = ROOT if kind == "runner" else args.before.resolve()
            line = runner_run(name, tree, rest, args.model, data, Path(tempfile.mkdtemp(prefix=f"runs-{name}-")), log,
                              predictions)
        else:
            raise SystemExit(f"error: unknown kind {kind!r} in {entry!r} (runner, before, trl)")
        line["date"] = datetime.now().isoformat(timespec="seconds")
        with args.out.open("a") as out:
            out.write(json.dumps(line) + "\n")
        print(json.dumps({k: v for k, v in line.items() if k not in ("curve", "base")}), flush=True)
    if args.plot:
        plot([json.loads(l) for l in args.out.read_text().splitlines() if l.strip()], args.plot, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
