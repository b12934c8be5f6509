"""`python -m runner.runs report [RUN|SWEEP ...] --out DIR`: one self-contained HTML page with PNG charts.

    loss.png           train loss (lines) and eval loss (markers) of every run, overlaid, against the epoch
    params.png         each eval metric against each swept parameter (one panel per pair)
    base_vs_tuned.png  the eval stage's figures for the base and the tuned model, run by run
    time_cost.png      each run's wall time split by stage, with GPU-hours and cost

The charts are drawn by runner/charts.py. The PNGs are written beside index.html and embedded in it (base64), so the page travels as one file.
A sweep ends by writing its report to <sweep>/report/index.html (runner/callbacks.py: SweepSummary).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.backends.modal_records import gpu_usage, stage_gpus
from runner.errors import UserError
from runner.evals.bootstrap import bracketed
from runner.records import override_pairs, read_json
from runner.charts import CHARTS, eval_figures, stage_times
from runner.runfolder import RunFolder, now

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

        gains = (metrics.get("eval") or {}).get("gains") or {}

        def pair(key: str) -> str:   # base → tuned, then the gain with its 95 % interval
            if key not in tuned:
                return "-"
            gain = f"<br><small>{bracketed(gains[key], 3)}</small>" if key in gains else ""
            return f"{_cell(base.get(key))} → {_cell(tuned.get(key))}{gain}"

        rows.append([html.escape(folder.run_id), html.escape(name), _cell(folder.status().get("state")),
                     _cell((metrics.get("train_loss") or {}).get("last")), _cell((metrics.get("eval_loss") or {}).get("last")),
                     pair("execution_accuracy"), pair("exact_match"),
                     _cell(sum(stage_times(folder).values()) / 60, 1), _cell(gpu_hours, 2),
                     f"${cost:.2f}" if cost is not None else "-"])
    return rows


def prediction_rows(folders: list[RunFolder], names: list[str]) -> list[list[str]]:
    from runner.prediction import cells

    rows = []
    for folder, name in zip(folders, names):
        prediction = folder.metrics().get("prediction")
        if not prediction:
            continue
        card = stage_gpus(folder.path).get("train") or (read_json(folder.path / "job.json", {}).get("compute") or {}).get("gpu_string")
        rows.append([html.escape(folder.run_id), html.escape(name),
                     html.escape(f"{prediction.get('option')} ({prediction.get('speed')})"), _cell(card),
                     *(html.escape(c) for c in cells(prediction))])
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
                _table(["run", "label", "state", "train loss", "eval loss", "exec acc (base → tuned, gain [95 % CI])",
                        "exact match (base → tuned, gain [95 % CI])", "wall min", "GPU-h", "cost"], run_rows(folders, names))]
    predicted = prediction_rows(folders, names)
    if predicted:   # gpu=auto's figures beside the run's own: the speed and memory models' calibration
        from runner.prediction import FIGURES

        sections += ["<h2>gpu=auto: predicted → measured</h2>",
                     "<p>The chosen option's row of the table gpu=auto ranked (job.json), beside what the trainer "
                     "logged; a ratio far from 1 says the speed or memory model needs recalibrating "
                     "(conf/gpu_speed.yaml, runner/memory.py).</p>",
                     _table(["run", "label", "option (speed figure)", "card it ran on",
                             *(f"{label} (predicted → measured)" for _, label, _ in FIGURES)], predicted)]
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
