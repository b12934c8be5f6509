"""Is one run's execution accuracy really above another's? A paired bootstrap over the held-out records.

    python bench/quality_compare.py PREDICTIONS_A.jsonl PREDICTIONS_B.jsonl [--samples 10000]

Both files hold the same held-out records with each model's answer (`prediction`), as the eval stage and
bench/peer_trl.py write them. Every record is scored again by runner.evals.sql (execution match, gold
queries that fail on their own schema left out); the records are resampled with replacement, the same
draw for both runs, and the difference A - B is read off each sample. Prints one JSON object: both
accuracies, the difference, its 95 % interval, and the share of samples in which A is not above B.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.evals.sql import score_record  # noqa: E402


def correct(path: Path) -> dict[str, bool | None]:
    """Per record (keyed by question and context): True/False, or None when the gold query fails."""
    scores = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            result = score_record(record)
            scores[record["question"] + "\n" + record["context"]] = None if result["gold_error"] else bool(result["execution"])
    return scores


def compare(a: Path, b: Path, samples: int = 10000, seed: int = 0) -> dict:
    first, second = correct(a), correct(b)
    keys = sorted(k for k in first if k in second and first[k] is not None and second[k] is not None)
    pairs = [(int(first[k]), int(second[k])) for k in keys]
    n = len(pairs)
    rng = random.Random(seed)
    diffs = []
    for _ in range(samples):
        draw = [pairs[rng.randrange(n)] for _ in range(n)]
        diffs.append(sum(x - y for x, y in draw) / n)
    diffs.sort()
    return {"a": str(a.name), "b": str(b.name), "records": n,
            "accuracy_a": round(sum(x for x, _ in pairs) / n, 4), "accuracy_b": round(sum(y for _, y in pairs) / n, 4),
            "difference": round(sum(x - y for x, y in pairs) / n, 4),
            "interval_95": [round(diffs[int(0.025 * samples)], 4), round(diffs[int(0.975 * samples) - 1], 4)],
            "share_a_not_above_b": round(sum(d <= 0 for d in diffs) / samples, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--samples", type=int, default=10000)
    args = parser.parse_args()
    print(json.dumps(compare(args.a, args.b, args.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
