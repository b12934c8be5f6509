"""What the user reads: the dry-run listing, a run's summary, a sweep's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner import curve
from runner.backends.registry import backend_named
from runner.models import spec as model_spec
from runner.plan import Job


def dry_run_text(job: Job, index: int, total: int) -> str:
    choices = " ".join(f"{g}={c}" for g, c in job.choices.items() if c is not None)
    header = [
        f"# job {index}/{total}: {choices}",
        f"# overrides: {' '.join(job.overrides) or '(none)'}",
        f"# compute: {job.compute.describe()}",
    ]
    if job.composed.gpu_choice is not None:
        header += [f"# {line}" for line in job.composed.gpu_choice.lines()]
    if job.placement.auto:
        header.append(f"# backend: auto chose {job.placement.backend}: {job.placement.reason}")
    header += backend_named(job.placement.backend).dry_run_lines(job)
    if job.config["model_spec"].get("source"):
        header.append(f"# model: from {job.config['model_spec']['source']}: {model_spec.describe(job.config['model_spec'])}")
    header += [f"# model: {note}" for note in job.model_notes]
    header += [
        f"# data: train {job.data['train'].records} records"
        + (f", test {job.data['test'].records}" if "test" in job.data else ""),
    ]
    shown = backend_named(job.placement.backend).shown_job(job)   # Modal: the containers' paths
    header.append("# axolotl config (written to <run_dir>/config.yml" + (", as the containers see it" if shown is not job else "") + "):")
    body = yaml.safe_dump(shown.axolotl_config, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def loss_line(metrics: dict[str, Any], key: str) -> str | None:
    loss = metrics.get(key)
    if not loss:
        return None
    text = f"{_fmt(loss['first'])} → {_fmt(loss['last'])}"
    if loss.get("first_epoch"):   # the held-out curve starts after some training (no evaluation before step 1)
        text += f"  (epoch {loss['first_epoch']:g} → {loss['last_epoch']:g})"
    return text


def run_summary(run_dir: Path, state: str, elapsed_s: float, metrics: dict[str, Any], adapter: bool) -> str:
    lines = [f"run {run_dir.name}  {state} in {elapsed_s / 60:.1f} min"]
    for label, key in (("train loss", "train_loss"), ("eval loss", "eval_loss")):
        text = loss_line(metrics, key)
        if text:
            lines.append(f"  {label:<12}{text}")
    if metrics.get("eval_curve"):
        lines.append(f"  {'curve':<12}{curve.describe(metrics['eval_curve'])}")
    startup = metrics.get("startup") or {}
    if startup.get("train_process_s") is not None:
        total = f"{startup['first_step_s']:.1f} s" if startup.get("first_step_s") is not None else "?"
        since = {"runner process": " from the runner's start", "run attempt": " from the run's start"}.get(startup.get("from"), "")
        lines.append(f"  {'start-up':<12}{total} to the first optimizer step{since} ({startup['train_process_s']:.1f} s "
                     "of it in the train stage: imports, data, model)")
    for label, value in metrics.get("summary_lines", []):
        lines.append(f"  {label:<12}{value}")
    outputs = run_dir / "outputs"
    if adapter and (outputs / "adapter_model.safetensors").exists():
        lines.append(f"  {'adapter':<12}{outputs}")
    elif not adapter and outputs.exists():
        lines.append(f"  {'model':<12}{outputs}")
    if (outputs / "merged").exists():
        lines.append(f"  {'merged':<12}{outputs / 'merged'}")
    elif adapter and (outputs / "adapter_model.safetensors").exists():
        lines.append(f"  {'merge':<12}{merge_command(run_dir)}  (eval, infer, serve: base + adapter)")
    lines.append(f"  {'records':<12}{run_dir}  (config.yml, metrics.json, logs/)")
    return "\n".join(lines)


def merge_command(run_dir: Path) -> str:
    """How to write a run's merged model later (the runs root named unless it is ./runs)."""
    root = "" if run_dir.parent.resolve() == Path("runs").resolve() else f" --runs-root {run_dir.parent}"
    return f"python -m runner.runs{root} merge {run_dir.name}"


def eval_metric(metrics: dict[str, Any]) -> str:
    """The eval stage's headline figure for the tuned model, else the trainer's last eval loss."""
    tuned = ((metrics.get("eval") or {}).get("tuned") or {}) if isinstance(metrics.get("eval"), dict) else {}
    for source in (tuned, metrics):
        for key in ("execution_accuracy", "exact_match"):
            if isinstance(source.get(key), (int, float)):
                return f"{key} {source[key]:.3f}"
    last = (metrics.get("eval_loss") or {}).get("last")
    return f"eval_loss {last:.3f}" if isinstance(last, (int, float)) else "-"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a rule under the headers."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*headers), line.format(*("-" * w for w in widths)), *(line.format(*r) for r in rows)])
