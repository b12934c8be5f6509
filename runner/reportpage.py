"""`python -m runner.runs report [RUN|SWEEP ...] --out DIR`: one self-contained HTML page with PNG charts.

    loss.png           train loss (lines) and eval loss (markers) of every run, overlaid, against the epoch
    params.png         each eval metric against each swept parameter (one panel per pair)
    base_vs_tuned.png  the eval stage's figures for the base and the tuned model, run by run
    time_cost.png      each run's wall time split by stage, with GPU-hours and cost

The PNGs are written beside index.html and embedded in it (base64), so the page travels as one file.
A sweep ends by writing its report to <sweep>/report/index.html (runner.app.print_sweep).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from runner.backends.modal_records import gpu_usage
from runner.errors import UserError
from runner.records import override_pairs, read_json, stage_seconds
from runner.runfolder import RunFolder, now
from runner.settings import STAGES

EVAL_METRICS = {"execution_accuracy": "execution accuracy", "exact_match": "exact match",
                "eval_loss": "held-out loss", "perplexity": "perplexity"}
STAGE_COLOURS = {"prepare": "#9e9e9e", "preprocess": "#8e7cc3", "train": "#3d85c6", "merge": "#e69138",
                 "eval": "#6aa84f"}


# -- what the report is about ----------------------------------------------------------------------
def resolve_targets(root: Path, names: list[str]) -> tuple[list[RunFolder], str, Path | None]:
    """The runs named (ids or prefixes) and the runs of the sweeps named (a sweep folder, or its name under
    <runs_root>/_sweeps); no names: every run under the root. Returns the runs, a title, and the sweep
    folder when exactly one sweep was named (its report goes inside it by default)."""
    from runner.lookup import find_run, run_folders
    from runner.sweeps import sweep_rows

    if not names:
        folders = run_folders(root)
        if not folders:
            raise UserError(f"no runs under {root} (set --runs-root DIR)")
        return folders, f"all runs under {root}", None
    folders: list[RunFolder] = []
    sweeps: list[Path] = []
    for name in names:
        sweep = next((p for p in (Path(name), root / "_sweeps" / name) if (p / "multirun.yaml").is_file()), None)
        if sweep is not None:
            sweeps.append(sweep.resolve())
            rows = sweep_rows(root, sweep)
            if not rows:
                raise UserError(f"sweep {sweep} has no runs under {root} yet")
            folders += [RunFolder((root / row["run_id"]).resolve()) for row in rows]
        else:
            folders.append(find_run(root, name))
    unique = list({f.path: f for f in folders}.values())
    title = f"sweep {sweeps[0].name}" if len(sweeps) == 1 and len(names) == 1 else f"{len(unique)} run{'s' * (len(unique) != 1)}"
    return unique, title, sweeps[0] if len(sweeps) == 1 and len(names) == 1 else None


def swept_parameters(folders: list[RunFolder]) -> dict[str, list[str | None]]:
    """Override keys whose value differs between the runs: name → each run's value (None: not set)."""
    pairs = [override_pairs(read_json(f.path / "job.json", {}).get("overrides")) for f in folders]
    keys = sorted(set().union(*pairs)) if pairs else []
    return {k: [p.get(k) for p in pairs] for k in keys if len({p.get(k) for p in pairs}) > 1}


def labels(folders: list[RunFolder], params: dict[str, list[str | None]]) -> list[str]:
    """A short legend name per run: what was swept (lora_r=8), else the run id's distinct tail."""
    out = []
    for i, folder in enumerate(folders):
        parts = [f"{k}={v[i]}" for k, v in params.items() if v[i] is not None and not k.startswith("backend")]
        out.append(" ".join(parts[:3]) or folder.run_id)
    return out if len(set(out)) == len(out) else [f"{o} ({f.run_id[-4:]})" for o, f in zip(out, folders)]


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


# -- the page ---------------------------------------------------------------------------------------
def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else html.escape(str(value))


def run_rows(folders: list[RunFolder], names: list[str]) -> list[list[str]]:
    rows = []
    for folder, name in zip(folders, names):
        metrics, base, tuned = folder.metrics(), eval_figures(folder, "base"), eval_figures(folder, "tuned")
        gpu_hours, cost = gpu_usage(folder.path)

        def pair(key: str) -> str:
            return f"{_cell(base.get(key))} → {_cell(tuned.get(key))}" if key in tuned else "-"

        rows.append([html.escape(folder.run_id), html.escape(name), _cell(folder.status().get("state")),
                     _cell((metrics.get("train_loss") or {}).get("last")), _cell((metrics.get("eval_loss") or {}).get("last")),
                     pair("execution_accuracy"), pair("exact_match"),
                     _cell(sum(stage_times(folder).values()) / 60, 1), _cell(gpu_hours, 2),
                     f"${cost:.2f}" if cost is not None else "-"])
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}code{background:#f6f6f6}"""


def write_report(folders: list[RunFolder], title: str, out: Path) -> Path:
    """index.html plus the PNGs in `out`; returns the page's path."""
    from runner.lookup import settings_of

    out.mkdir(parents=True, exist_ok=True)
    params = swept_parameters(folders)
    names = labels(folders, params)
    sections = [f"<h1>runner report: {html.escape(title)}</h1>",
                f"<p>{len(folders)} run(s), written {now()}.</p>",
                "<h2>Runs</h2>",
                _table(["run", "label", "state", "train loss", "eval loss", "exec acc (base → tuned)",
                        "exact match (base → tuned)", "wall min", "GPU-h", "cost"], run_rows(folders, names))]
    if len(folders) > 1:
        settings = [settings_of(f) for f in folders]
        keys = sorted(set().union(*settings))
        differing = [k for k in keys if len({repr(s.get(k, "<unset>")) for s in settings}) > 1]
        sections += ["<h2>Settings that differ</h2>",
                     _table(["setting", *names], [[html.escape(k), *(_cell(s.get(k, "<unset>"), 6) for s in settings)]
                                                  for k in differing]) if differing else "<p>None.</p>"]
    for file_name, heading, draw in CHARTS:
        png = draw(folders, names, params, out / file_name)
        if png is None:
            continue
        data = base64.b64encode(png.read_bytes()).decode()
        sections += [f"<h2>{html.escape(heading)}</h2>",
                     f'<img src="data:image/png;base64,{data}" alt="{html.escape(heading)}" data-file="{file_name}">']
    page = out / "index.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'>"
                    f"<title>runner report: {html.escape(title)}</title><style>{STYLE}</style></head><body>"
                    + "\n".join(sections) + "</body></html>\n")
    return page


def report(root: Path, args: list[str]) -> str:
    """The CLI command: parse [RUN|SWEEP ...] [--out DIR], write the report, return what to print."""
    out = None
    names = []
    rest = list(args)
    while rest:
        item = rest.pop(0)
        if item == "--out":
            if not rest:
                raise UserError("--out needs a folder")
            out = Path(rest.pop(0))
        elif item.startswith("--out="):
            out = Path(item.split("=", 1)[1])
        elif item.startswith("-"):
            raise UserError(f"unknown option '{item}' for report (usage: report [RUN|SWEEP ...] --out DIR)")
        else:
            names.append(item)
    folders, title, sweep = resolve_targets(root, names)
    if out is None:
        out = sweep / "report" if sweep else root / "_reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    page = write_report(folders, title, out)
    return f"report: {page}  ({len(folders)} run{'s' * (len(folders) != 1)}; open it in a browser)"
