"""The time-to-quality benchmark's data: real text-to-SQL records (sql-create-context, CC-BY-4.0) from
../shared/data/sqlqa.jsonl, split once into train and held-out files.

    python bench/quality_data.py OUT_DIR [--train 700] [--test 300] [--source FILE]

writes OUT_DIR/train.jsonl and OUT_DIR/test.jsonl: the records shuffled with seed 0, the first `--train`
to train on, the next `--test` held out. The shared file is ordered by database (Spider's first, then
WikiSQL's), so a plain head/tail split would hold out schemas never trained on; the shuffle mixes them.
The product never reads this file: benchmarks and tests do.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sqlqa.jsonl"


def split(out_dir: Path, train: int = 700, test: int = 300, source: Path = SHARED, seed: int = 0) -> tuple[Path, Path]:
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if train + test > len(lines):
        raise SystemExit(f"error: {source} has {len(lines)} records, {train} + {test} asked for")
    random.Random(seed).shuffle(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "train.jsonl", out_dir / "test.jsonl"
    paths[0].write_text("\n".join(lines[:train]) + "\n", encoding="utf-8")
    paths[1].write_text("\n".join(lines[train : train + test]) + "\n", encoding="utf-8")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=700)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--source", type=Path, default=SHARED)
    args = parser.parse_args()
    for path in split(args.out_dir, args.train, args.test, args.source):
        print(path)


if __name__ == "__main__":
    main()
