"""gpu=auto's prediction beside what the run measured (issue 27, goal 6): train time, tokens/s and peak memory
per GPU, so the speed and memory models can be recalibrated from real runs.

Predicted: the chosen option's row of the table job.json keeps (runner/gpu_choice.py), its train time without
the container start-up the choice adds on Modal. Measured: the trainer's own figures from its logged records
(train_runtime; `memory/max_allocated (GiB)`, which axolotl logs on the main process; `tokens/total` where
axolotl counts tokens).
"""

from __future__ import annotations

from typing import Any

from runner.compute import FIXED_OVERHEAD_H

MEMORY_KEY = "memory/max_allocated (GiB)"


def compare(job: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """{"prediction": {...}} for metrics.json, or {} for a run gpu=auto did not choose a card for."""
    choice = job.get("gpu_choice") or {}
    chosen = next((c for c in choice.get("candidates") or [] if c.get("option") == choice.get("chosen")), None)
    summary = next((r for r in reversed(history) if isinstance(r.get("train_runtime"), (int, float))), None)
    if chosen is None or summary is None:
        return {}
    start_up = 0.0 if chosen.get("where") == "this machine" else FIXED_OVERHEAD_H
    runtime = float(summary["train_runtime"])
    peaks = [r[MEMORY_KEY] for r in history if isinstance(r.get(MEMORY_KEY), (int, float))]
    tokens = [r["tokens/total"] for r in history if isinstance(r.get("tokens/total"), (int, float))]
    figures = {
        "train_s": {"predicted": round((chosen["hours"] - start_up) * 3600, 1), "measured": round(runtime, 1)},
        "peak_gib": {"predicted": chosen["need_gib"], "measured": max(peaks) if peaks else None},
        "tokens_per_s": {"predicted": chosen["tokens_per_s"],
                         "measured": round(tokens[-1] / runtime, 1) if tokens and runtime > 0 else None},
    }
    return {"prediction": {"option": chosen["option"], "speed": chosen.get("speed"), **figures}}


def describe(prediction: dict[str, Any]) -> str:
    """'l40s (scaled): train 4.1 min predicted, 5.3 measured (×1.29); peak 22.1 GiB, 19.0 (×0.86); ...'"""
    parts = []
    for key, label, unit, scale in (("train_s", "train", " min", 1 / 60), ("peak_gib", "peak", " GiB", 1),
                                    ("tokens_per_s", "tokens/s", "", 1)):
        figure = prediction.get(key) or {}
        predicted, measured = figure.get("predicted"), figure.get("measured")
        if predicted is None:
            continue
        text = f"{label} {predicted * scale:,.1f}{unit} predicted"
        if measured is not None:
            text += f", {measured * scale:,.1f} measured" + (f" (×{measured / predicted:.2f})" if predicted else "")
        parts.append(text)
    return f"{prediction.get('option')} ({prediction.get('speed')}): " + "; ".join(parts)


FIGURES = (("train_s", "train min", 1 / 60), ("peak_gib", "peak GiB/GPU", 1), ("tokens_per_s", "tokens/s", 1))


def cells(prediction: dict[str, Any]) -> list[str]:
    """Per figure: 'predicted → measured (×ratio)', for a table (runs report)."""
    out = []
    for key, _, scale in FIGURES:
        figure = prediction.get(key) or {}
        predicted, measured = figure.get("predicted"), figure.get("measured")
        if predicted is None:
            out.append("-")
            continue
        text = f"{predicted * scale:,.1f} → " + ("-" if measured is None else f"{measured * scale:,.1f}")
        if measured is not None and predicted:
            text += f" (×{measured / predicted:.2f})"
        out.append(text)
    return out
