"""What a run's held-out loss curve says about its length: still falling at the end (train longer), risen
from its best (overfit: fewer epochs, or keep the best checkpoint), or levelled off.

The curve is the trainer's in-training evaluation (`eval_loss` with its `epoch`, logs/train_history.json).
Judged on the last two points and the best one:
- the last point is the best and lies more than IMPROVING below the one before it → `still_improving`;
- the last point lies more than OVERFIT above the best → `overfit`;
- otherwise → `levelled`.
"""

from __future__ import annotations

from typing import Any

IMPROVING = 0.01   # relative drop over the last evaluation that still counts as learning
OVERFIT = 0.02     # relative rise over the best that counts as overfitting


def judge(records: list[dict]) -> dict[str, Any] | None:
    """The verdict on a train history's eval losses, or None with fewer than two evaluations."""
    points = [(float(r["epoch"]), float(r["eval_loss"])) for r in records
              if isinstance(r.get("eval_loss"), (int, float)) and isinstance(r.get("epoch"), (int, float))]
    if len(points) < 2:
        return None
    best_epoch, best = min(points, key=lambda p: p[1])
    (_, before), (last_epoch, last) = points[-2], points[-1]
    if last <= best and before - last > IMPROVING * before:
        verdict = "still_improving"
    elif last - best > OVERFIT * best:
        verdict = "overfit"
    else:
        verdict = "levelled"
    return {"verdict": verdict, "best": round(best, 5), "best_epoch": round(best_epoch, 3), "last": round(last, 5),
            "last_epoch": round(last_epoch, 3), "last_change": round((last - before) / before, 4) if before else None,
            "evaluations": len(points)}


def describe(curve: dict[str, Any]) -> str:
    """One line for the run summary."""
    change = curve.get("last_change") or 0.0
    if curve["verdict"] == "still_improving":
        return (f"still falling at the end ({change:+.1%} over the last evaluation, epoch {curve['last_epoch']:g}): "
                "more epochs would likely help")
    if curve["verdict"] == "overfit":
        rise = (curve["last"] - curve["best"]) / curve["best"]
        return (f"overfit: best {curve['best']:.3f} at epoch {curve['best_epoch']:g}, {curve['last']:.3f} at the end "
                f"({rise:+.1%}): fewer epochs")
    return f"levelled off: best {curve['best']:.3f} at epoch {curve['best_epoch']:g} of {curve['last_epoch']:g}"
