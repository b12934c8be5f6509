"""What an eval record says to a reader: each base → tuned gain with its 95 % interval (from the per-record
files both models left in the run's eval/ folder) and the run summary's lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.evals import bootstrap

# metric key → summary label and digits, in the order the summary prints them (the run summary already
# shows the trainer's eval loss; labels fit its 12-character column)
SUMMARY = {"execution_accuracy": ("exec acc", 3), "exact_match": ("exact match", 3), "perplexity": ("perplexity", 2)}


def summary_lines(record: dict[str, Any]) -> list[list[str]]:
    """(label, "base → tuned") pairs for the run summary; tuned alone when the base was not evaluated."""
    base, tuned = record.get("base") or {}, record.get("tuned") or {}
    lines = []
    for key, (label, digits) in SUMMARY.items():
        if not isinstance(tuned.get(key), (int, float)):
            continue
        if isinstance(base.get(key), (int, float)):
            gain = (record.get("gains") or {}).get(key)
            interval = f"; {bootstrap.describe(gain, digits)}" if gain else ""
            lines.append([label, f"{base[key]:.{digits}f} → {tuned[key]:.{digits}f}  (base → tuned{interval})"])
        else:
            lines.append([label, f"{tuned[key]:.{digits}f}  (tuned)"])
    if isinstance(tuned.get("no_query"), int):   # answers a query could not be read from
        count = f"of {record['n']} answers"
        lines.append(["no query", f"{base['no_query']} → {tuned['no_query']} {count}  (base → tuned)"
                      if isinstance(base.get("no_query"), int) else f"{tuned['no_query']} {count}  (tuned)"])
    if lines:
        lines.append(["eval split", f"{record['split']}, {record['n']} records"
                      + (f", {record['engine']} greedy" if record.get("engine") else "")])
    return lines


def base_to_tuned(run_dir: Path) -> dict[str, dict]:
    """Each base → tuned figure's gain with its 95 % interval (a paired bootstrap over the held-out
    records), from the per-record files both models left in eval/; {} where the base was not evaluated."""
    from runner.records import read_json

    folder, gains = Path(run_dir) / "eval", {}
    if all((folder / f"losses-{v}.json").is_file() for v in ("base", "tuned")):
        gains.update(bootstrap.loss_gain(read_json(folder / "losses-base.json"),
                                         read_json(folder / "losses-tuned.json")) or {})
    answers = [folder / f"predictions-{v}.jsonl" for v in ("base", "tuned")]
    if all(path.is_file() for path in answers):
        base, tuned = ([json.loads(line) for line in path.read_text().splitlines() if line.strip()] for path in answers)
        if len(base) == len(tuned) and all("execution" in r for r in base + tuned):
            for key, field in (("execution_accuracy", "execution"), ("exact_match", "exact")):
                if (gain := bootstrap.accuracy_gain([r[field] for r in base], [r[field] for r in tuned])):
                    gains[key] = gain
    return gains
