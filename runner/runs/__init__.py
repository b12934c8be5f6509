"""`python -m runner.runs COMMAND`: the runs under a runs root, local or Modal. One module per command that
needs more than a few lines (compare, again: resume and rerun, merge); the commands and their arguments are
USAGE below, which `--help` prints. It sits on top of the core, which never imports it (tests/test_layout.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.backends.modal_records import FINAL_STATES, gpu_usage, modal_record, pull_run, stage_gpus
from runner.errors import UserError, report, unknown
from runner.records import read_json
from runner.report import _fmt, eval_metric, loss_line, text_table
from runner.runfolder import RunFolder
from runner.lookup import backend_of, find_run, run_folders

USAGE = """usage: python -m runner.runs [--runs-root DIR] COMMAND

  list                 every run under the runs root (default ./runs), newest last
  show RUN             one run's overrides, stages, metrics and files (RUN: its id, or a unique prefix)
  sync [RUN ...]       copy Modal runs' status, metrics, configs and logs back from the runs Volume
  compare RUN RUN ...  the settings that differ, then train/eval loss, accuracy, GPU-hours, cost side by side
  report [RUN|SWEEP ...] [--out DIR]
                       one HTML page with PNG charts (loss curves, eval figures vs swept parameters, base vs
                       tuned, time and cost); SWEEP: a folder under <runs root>/_sweeps; none named: all runs
  resume RUN           continue a failed or interrupted run from its first unfinished stage, in its folder
  rerun RUN            the same job again from its records, in a new run folder
  merge RUN [RUN ...]  write each run's merged model (adapter + base) into its outputs/merged
"""


def shown_state(status: dict, folder: RunFolder | None = None) -> str:
    """The recorded state, but `died` for a run recorded as running whose runner process is gone (on another
    host: whose heartbeat stopped; not for runs on Modal, whose sweep keeps their records)."""
    from runner.runfolder import heartbeat_at
    from runner.runs.again import died

    heartbeat = heartbeat_at(folder.path) if folder is not None and not modal_record(folder.path) else None
    return "died" if died(status, heartbeat) else status.get("state", "unknown")


def summary_row(folder: RunFolder) -> list[str]:
    job, status, metrics = read_json(folder.path / "job.json", {}), folder.status(), folder.metrics()
    choices = job.get("choices") or {}
    state = shown_state(status, folder)
    if state == "failed" and status.get("failed_stage"):
        state = f"failed ({status['failed_stage']})"
    gpu_hours, cost = gpu_usage(folder.path)
    return [folder.run_id, state, backend_of(folder),
            "/".join(str(choices.get(g) or "-") for g in ("model", "adapter", "gpu")),
            _fmt((metrics.get("train_loss") or {}).get("last")), eval_metric(metrics),
            _fmt(gpu_hours, 2), f"${cost:.2f}" if cost is not None else "-"]


def table(rows: list[list[str]]) -> str:
    return text_table(["run", "state", "backend", "model/adapter/gpu", "train loss", "eval", "GPU-h", "cost"], rows)


def list_runs(root: Path) -> str:
    folders = run_folders(root)
    return table([summary_row(f) for f in folders]) if folders else f"no runs under {root}"


def show_run(folder: RunFolder) -> str:
    job, status, metrics = read_json(folder.path / "job.json", {}), folder.status(), folder.metrics()
    lines = [f"run {folder.run_id}  {shown_state(status, folder)}  (backend {backend_of(folder)})",
             f"  overrides   {' '.join(job.get('overrides') or []) or '(defaults)'}"]
    if shown_state(status, folder) == "died":
        process = status.get("process") or {}
        lines.append(f"  died        its runner (process {process.get('pid')} on {process.get('host')}) is gone: "
                     f"python -m runner.runs resume {folder.run_id}")
    elif status.get("signal"):
        lines.append(f"  stopped by  {status['signal']}: python -m runner.runs resume {folder.run_id}")
    compute = job.get("compute") or {}
    if compute:
        got = stage_gpus(folder.path).get("train")   # a stand-in from the fallback list, where Modal gave one
        ran = f"  (ran on {got}: a fallback)" if got and got != compute.get("gpu_string") else ""
        lines.append(f"  compute     gpu={compute.get('gpu_string') or 'CPU'}  processes={compute.get('processes')}{ran}")
    for stage, entry in status.get("stages", {}).items():
        extra = entry.get("reason") or entry.get("error") or ""
        lines.append(f"  {stage:<11} {entry.get('state', '?'):<10}{entry.get('started', '')[:19]:<21}{extra}")
    for label, key in (("train loss", "train_loss"), ("eval loss", "eval_loss")):
        if loss_line(metrics, key):
            lines.append(f"  {label:<11} {loss_line(metrics, key)}")
    gpu_hours, cost = gpu_usage(folder.path)
    if gpu_hours is not None:
        lines.append(f"  GPU-hours   {gpu_hours:.2f}" + (f"  (~${cost:.2f})" if cost is not None else ""))
    if metrics.get("prediction"):   # gpu=auto's, beside what the run measured (runner/prediction.py)
        from runner.prediction import describe

        lines.append(f"  predicted   {describe(metrics['prediction'])}")
    lines.append(f"  records     {folder.path}  (config.yml, metrics.json, logs/)")
    from runner.tracking import where

    if where(folder):
        lines.append(f"  tracking    {where(folder)}")
    record = modal_record(folder.path)
    if record:
        lines.append(f"  weights     runs Volume '{record.get('runs_volume')}': /{folder.run_id}/outputs "
                     f"(modal volume get {record.get('runs_volume')} /{folder.run_id}/outputs/merged)")
        lines.append(f"  modal       app '{record.get('app')}', sweep call {record.get('call_id')}")
    return "\n".join(lines)


def sync(root: Path, names: list[str]) -> str:
    """Pull Modal runs back: the named ones, or every Modal run not yet finished locally."""
    if names:
        folders = [find_run(root, name) for name in names]
        not_modal = [f.run_id for f in folders if not modal_record(f.path)]
        if not_modal:
            raise UserError(f"run {not_modal[0]} ran locally: nothing to sync")
    else:
        folders = [f for f in run_folders(root) if modal_record(f.path) and f.status().get("state") not in FINAL_STATES]
    if not folders:
        return "nothing to sync: every Modal run is finished here (name one to pull it again)"
    from runner.backends.modal_credentials import require_credentials

    require_credentials()
    import modal

    volumes: dict[str, Any] = {}
    for folder in folders:
        record = modal_record(folder.path) or {}
        name = record["runs_volume"]
        volume = volumes.setdefault(name, modal.Volume.from_name(name))
        pull_run(volume, folder.run_id, folder.path)
        if folder.status().get("state") not in FINAL_STATES and sweep_ended(record.get("call_id")):
            folder.set_state("failed", error="the sweep on Modal ended without finishing this run")
    return table([summary_row(f) for f in folders])


def sweep_ended(call_id: str | None) -> bool:
    """True once the sweep function has returned or failed (then no run of it is still going)."""
    if not call_id:
        return False
    import modal

    try:
        modal.FunctionCall.from_id(call_id).get(timeout=0)
    except TimeoutError:
        return False
    except Exception:  # noqa: BLE001 - the sweep itself failed or its result expired: it is over either way
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    from runner import signals

    signals.install()   # `resume` runs stages: SIGTERM and SIGHUP stop them as Ctrl-C does
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    root = Path("runs")
    try:
        if args[0] == "--runs-root":
            if len(args) < 3:
                raise UserError("--runs-root needs a folder and a command")
            root, args = Path(args[1]), args[2:]
        command, rest = args[0], args[1:]
        if command == "list" and not rest:
            print(list_runs(root))
        elif command == "show" and len(rest) == 1:
            print(show_run(find_run(root, rest[0])))
        elif command == "sync":
            print(sync(root, rest))
        elif command == "compare" and len(rest) >= 2:
            from runner.runs.compare import compare

            print(compare([find_run(root, name) for name in rest]))
        elif command == "report":
            from runner.reportpage import report as write_report

            print(write_report(root, rest))
        elif command in ("resume", "rerun") and len(rest) == 1:
            from runner.runs import again

            return getattr(again, command)(find_run(root, rest[0]))
        elif command == "merge" and rest:
            from runner.runs.merge import merge

            return merge([find_run(root, name) for name in rest])
        elif command in COMMANDS:
            raise UserError(f"usage: python -m runner.runs {command} {COMMANDS[command]}".rstrip())
        else:
            raise unknown("command", command, COMMANDS)
    except (UserError, KeyboardInterrupt) as e:
        return report(e)
    return 0


COMMANDS = {"list": "", "show": "RUN", "sync": "[RUN ...]", "compare": "RUN RUN [RUN ...]", "report": "[RUN|SWEEP ...] [--out DIR]",
            "resume": "RUN", "rerun": "RUN", "merge": "RUN [RUN ...]"}

