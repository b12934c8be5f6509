"""The report page's charts (runner/reportpage.py), one PNG each: loss curves, eval figures against the
swept parameters, base vs tuned, time and cost. matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runner.backends.modal_records import gpu_usage
from runner.records import read_json, stage_seconds
from runner.runfolder import RunFolder
from runner.settings import STAGES

EVAL_METRICS = {"execution_accuracy": "execution accuracy", "exact_match": "exact match",
                "eval_loss": "held-out loss", "perplexity": "perplexity"}
STAGE_COLOURS = {"prepare": "#9e9e9e", "preprocess": "#8e7cc3", "train": "#3d85c6", "merge": "#e69138",
                 "eval": "#6aa84f"}


def _number(text: str | None) -> float | None:
    """An override's value as a number (`5e-05` too, which YAML 1.1 reads as a string), else None."""
    if text is None or str(text).strip().lower() in ("true", "false", "nan", "inf", "-inf"):
        return None
    try:
        return float(str(text))
    except ValueError:
        return None


def eval_figures(folder: RunFolder, side: str) -> dict[str, float]:
    record = (folder.metrics().get("eval") or {}).get(side) or {}
    return {k: float(record[k]) for k in EVAL_METRICS if isinstance(record.get(k), (int, float))}


def stage_times(folder: RunFolder) -> dict[str, float]:
    """Each ended stage's wall seconds (skipped stages left out)."""
    stages = folder.status().get("stages", {}).items()
    return {stage: s for stage, entry in stages if entry.get("state") != "skipped" and (s := stage_seconds(entry)) is not None}


# -- charts -----------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def loss_chart(folders: list[RunFolder], names: list[str], path: Path) -> Path | None:
    histories = [read_json(f.path / "logs" / "train_history.json", []) for f in folders]
    if not any(histories):
        return None
    bases = [((read_json(f.path / "metrics.json", {}).get("eval") or {}).get("base") or {}).get("eval_loss") for f in folders]
    plt, fig = _figure(8, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for i, (history, name, base) in enumerate(zip(histories, names, bases)):
        colour = f"C{i % 10}"
        train = [(r["epoch"], r["loss"]) for r in history if isinstance(r.get("loss"), (int, float)) and "epoch" in r]
        held = [(r["epoch"], r["eval_loss"]) for r in history if isinstance(r.get("eval_loss"), (int, float)) and "epoch" in r]
        if held and held[0][0] > 0 and isinstance(base, (int, float)):
            held.insert(0, (0.0, base))   # the base model's held-out loss (the eval stage's) starts the curve
        if train:
            ax.plot(*zip(*train), color=colour, linewidth=1.5, label=f"{name} train")
        if held:
            ax.plot(*zip(*held), color=colour, linestyle="--", marker="o", markersize=4, label=f"{name} eval")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Train loss (lines) and eval loss (dashed) per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(folders) > 4 else 1)
    return _save(plt, fig, path)


def params_chart(folders: list[RunFolder], params: dict[str, list[str | None]], path: Path) -> Path | None:
    """One panel per swept parameter and eval metric that differs between the runs, two to a row."""
    tuned = [eval_figures(f, "tuned") for f in folders]
    metrics = [m for m in EVAL_METRICS if len({round(t[m], 9) for t in tuned if m in t}) > 1]
    swept = {k: v for k, v in params.items() if any(x is not None for x in v)}
    if not metrics or not swept:
        return None
    panels = [(param, values, metric) for param, values in swept.items() for metric in metrics]
    columns = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // columns)
    plt, fig = _figure(4.2 * columns, 3.0 * rows + 0.5)
    from matplotlib.ticker import ScalarFormatter

    for index, (param, values, metric) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, index + 1)
        points = [(v, t[metric]) for v, t in zip(values, tuned) if v is not None and metric in t]
        if all(_number(v) is not None for v, _ in points):
            points.sort(key=lambda p: _number(p[0]))
            xs = [_number(v) for v, _ in points]
            ax.plot(xs, [y for _, y in points], marker="o")
            if len(set(xs)) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(ScalarFormatter())
                ax.set_xticks(sorted(set(xs)), [str(v) for v in sorted({v for v, _ in points}, key=_number)])
                ax.minorticks_off()
        else:
            cats = list(dict.fromkeys(v for v, _ in points))
            ax.scatter([cats.index(v) for v, _ in points], [y for _, y in points])
            ax.set_xticks(range(len(cats)), cats, rotation=20, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(param, fontsize=8)
        ax.set_title(EVAL_METRICS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Tuned model's eval figures against each swept parameter", fontsize=10)
    return _save(plt, fig, path)


def base_vs_tuned_chart(folders: list[RunFolder], names: list[str], path: Path) -> Path | None:
    pairs = [(eval_figures(f, "base"), eval_figures(f, "tuned")) for f in folders]
    metrics = [m for m in ("execution_accuracy", "exact_match") if any(m in t for _, t in pairs)]
    if not metrics:
        return None
    plt, fig = _figure(max(6, 1.2 * len(folders) + 3), 3.2 * len(metrics))
    for row, metric in enumerate(metrics):
        ax = fig.add_subplot(len(metrics), 1, row + 1)
        xs = range(len(folders))
        ax.bar([x - 0.2 for x in xs], [b.get(metric, 0) for b, _ in pairs], width=0.4, color="#bbbbbb", label="base")
        ax.bar([x + 0.2 for x in xs], [t.get(metric, 0) for _, t in pairs], width=0.4, color="#3d85c6", label="tuned")
        ax.set_xticks(list(xs), names, rotation=15, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(EVAL_METRICS[metric])
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Base model vs tuned model (held-out records)", fontsize=10)
    return _save(plt, fig, path)


def time_cost_chart(folders: list[RunFolder], names: list[str], path: Path) -> Path | None:
    seconds = [stage_times(f) for f in folders]
    if not any(seconds):
        return None
    plt, fig = _figure(8, max(2.5, 0.5 * len(folders) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    for stage in STAGES:
        lefts = [sum(s.get(x, 0) for x in STAGES[:STAGES.index(stage)]) / 60 for s in seconds]
        ax.barh(range(len(folders)), [s.get(stage, 0) / 60 for s in seconds], left=lefts,
                color=STAGE_COLOURS.get(stage), label=stage)
    for i, folder in enumerate(folders):
        gpu_hours, cost = gpu_usage(folder.path)
        note = f" {sum(seconds[i].values()) / 60:.1f} min"
        if gpu_hours is not None:
            note += f", {gpu_hours:.2f} GPU-h" + (f", ${cost:.2f}" if cost is not None else "")
        ax.text(sum(seconds[i].values()) / 60, i, note, va="center", fontsize=7)
    ax.set_yticks(range(len(folders)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("minutes")
    ax.set_title("Wall time per stage")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.margins(x=0.25)
    return _save(plt, fig, path)


CHARTS: list[tuple[str, str, Callable[..., Path | None]]] = [
    ("loss.png", "Loss curves", lambda f, n, p, path: loss_chart(f, n, path)),
    ("params.png", "Eval figures against the swept parameters", lambda f, n, p, path: params_chart(f, p, path)),
    ("base_vs_tuned.png", "Base vs tuned", lambda f, n, p, path: base_vs_tuned_chart(f, n, path)),
    ("time_cost.png", "Time and cost", lambda f, n, p, path: time_cost_chart(f, n, path)),
]
