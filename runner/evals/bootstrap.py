"""Is a base → tuned gain real? A paired bootstrap over the held-out records.

Both models answered the same records, so the records are resampled with replacement (the same draw for
both) and the tuned − base difference is read off each sample; the 2.5th and 97.5th percentiles of those
differences are the 95 % interval. On 200–300 records a gain of a few points in accuracy is often inside
the noise: an interval that contains 0 says so. Loss and perplexity are ratios (answer-token loss summed
over records ÷ answer tokens), resampled the same way.

Per-record inputs: accuracy-like figures as 0/1 per record (None: not scorable, left out for both), loss as
(summed loss, answer tokens) per record.
"""

from __future__ import annotations

from typing import Sequence

SAMPLES = 2000
SEED = 0


def _draws(n: int, samples: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _interval(differences) -> list[float]:
    import numpy as np

    low, high = np.percentile(differences, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def accuracy_gain(base: Sequence[bool | None], tuned: Sequence[bool | None], samples: int = SAMPLES,
                  seed: int = SEED) -> dict | None:
    """{"gain", "interval_95", "records"} of tuned − base accuracy over the records both scored; None when
    there are none."""
    import numpy as np

    pairs = [(float(b), float(t)) for b, t in zip(base, tuned, strict=True) if b is not None and t is not None]
    if not pairs:
        return None
    both = np.array(pairs)
    draws = _draws(len(pairs), samples, seed)
    gains = both[draws, 1].mean(axis=1) - both[draws, 0].mean(axis=1)
    return {"gain": round(float(both[:, 1].mean() - both[:, 0].mean()), 4), "interval_95": _interval(gains),
            "records": len(pairs)}


def loss_gain(base: Sequence[Sequence[float] | None], tuned: Sequence[Sequence[float] | None],
              samples: int = SAMPLES, seed: int = SEED) -> dict | None:
    """Tuned − base of the answer-token loss and of the perplexity, each with its 95 % interval:
    {"eval_loss": {...}, "perplexity": {...}}; None without records that both measured."""
    import numpy as np

    rows = [(b[0], b[1], t[0], t[1]) for b, t in zip(base, tuned, strict=True)
            if b is not None and t is not None and b[1] and t[1]]
    if not rows:
        return None
    table = np.array(rows, dtype=float)
    draws = _draws(len(rows), samples, seed)
    picked = table[draws]   # samples × records × (base sum, base tokens, tuned sum, tuned tokens)
    base_loss = picked[..., 0].sum(axis=1) / picked[..., 1].sum(axis=1)
    tuned_loss = picked[..., 2].sum(axis=1) / picked[..., 3].sum(axis=1)
    whole_base, whole_tuned = table[:, 0].sum() / table[:, 1].sum(), table[:, 2].sum() / table[:, 3].sum()
    return {
        "eval_loss": {"gain": round(float(whole_tuned - whole_base), 4),
                      "interval_95": _interval(tuned_loss - base_loss), "records": len(rows)},
        "perplexity": {"gain": round(float(np.exp(whole_tuned) - np.exp(whole_base)), 4),
                       "interval_95": _interval(np.exp(np.minimum(tuned_loss, 700)) - np.exp(np.minimum(base_loss, 700))),
                       "records": len(rows)},
    }


def describe(gain: dict, digits: int) -> str:
    """`+0.326, 95 % CI +0.27…+0.38` (a gain whose interval holds 0 is marked as noise)."""
    low, high = gain["interval_95"]
    text = f"{gain['gain']:+.{digits}f}, 95 % CI {low:+.{digits}f}…{high:+.{digits}f}"
    return text + (": within noise" if low <= 0 <= high else "")


def bracketed(gain: dict, digits: int) -> str:
    """`+0.326 [+0.270, +0.380]`, for tables."""
    low, high = gain["interval_95"]
    return f"{gain['gain']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
