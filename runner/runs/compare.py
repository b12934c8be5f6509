"""`python -m runner.runs compare RUN_A RUN_B [...]`: only the settings that differ, then the results side
by side. Each run's own id (in its paths and tracker names) is set aside first, so what differs is what
the user changed."""

from __future__ import annotations

from typing import Any

from runner.backends.modal_records import gpu_usage
from runner.lookup import settings_of
from runner.runfolder import RunFolder

# result rows: label → a function of (metrics, folder)
RESULTS = {
    "state": lambda m, f: f.status().get("state", "?"),
    "train loss": lambda m, f: _last(m.get("train_loss")),
    "eval loss": lambda m, f: _last(m.get("eval_loss")),
    "exec acc": lambda m, f: _tuned(m, "execution_accuracy"),
    "exact match": lambda m, f: _tuned(m, "exact_match"),
    "base exec acc": lambda m, f: _base(m, "execution_accuracy"),
    "exec acc gain": lambda m, f: _gain(m, "execution_accuracy"),   # tuned − base, 95 % interval
    "eval loss gain": lambda m, f: _gain(m, "eval_loss"),
    "train s": lambda m, f: m.get("train_runtime_s"),
    "GPU-hours": lambda m, f: gpu_usage(f.path)[0],
    "cost $": lambda m, f: gpu_usage(f.path)[1],
}


def _last(series: Any) -> Any:
    return series.get("last") if isinstance(series, dict) else None


def _tuned(metrics: dict[str, Any], key: str) -> Any:
    return ((metrics.get("eval") or {}).get("tuned") or {}).get(key)


def _base(metrics: dict[str, Any], key: str) -> Any:
    return ((metrics.get("eval") or {}).get("base") or {}).get(key)


def _gain(metrics: dict[str, Any], key: str) -> str | None:
    from runner.evals.bootstrap import bracketed

    gain = ((metrics.get("eval") or {}).get("gains") or {}).get(key)
    return bracketed(gain, 3) if gain else None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def compare(folders: list[RunFolder]) -> str:
    from runner.report import text_table

    settings = [settings_of(f) for f in folders]
    keys = sorted(set().union(*settings))
    differing = [k for k in keys if len({repr(s.get(k, "<unset>")) for s in settings}) > 1]
    header = ["", *(f.run_id for f in folders)]
    lines = [f"{len(differing)} setting(s) differ:"]
    lines.append(text_table(header, [[k, *(_cell(s.get(k, "<unset>")) for s in settings)] for k in differing])
                 if differing else "  (none: the same composed config)")
    metrics = [f.metrics() for f in folders]
    lines.append("\nresults:")
    lines.append(text_table(header, [[label, *(_cell(fn(m, f)) for m, f in zip(metrics, folders))]
                                     for label, fn in RESULTS.items()]))
    return "\n".join(lines)
