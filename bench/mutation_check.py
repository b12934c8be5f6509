"""Mutation check (issue 29): one-line faults in core logic, each applied alone, and the tests that should
catch it run; a fault that no test catches is a hole in the suite.

    python bench/mutation_check.py [--only N ...] [--out bench/results/mutations-DATE.md]

Each fault is (file, the exact text, its faulty replacement, the test files to run). The file is restored
after each run (also on Ctrl-C). The table: fault → the first failing test, or SURVIVED.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAULTS = [
    ("cache key: data settings compared the wrong way round", "runner/cache.py",
     "if k not in NOT_DATA and", "if k in NOT_DATA and", ["tests/test_records.py", "tests/test_modal_app.py", "tests/test_manage.py"]),
    ("a dropped stage: eval never runs", "runner/schema/stages.py",
     'STAGES = ("prepare", "preprocess", "train", "merge", "eval")', 'STAGES = ("prepare", "preprocess", "train", "merge")',
     ["tests/test_hydra_app.py", "tests/test_stage_failure.py", "tests/test_schema.py"]),
    ("SQL scorer: execution accuracy over one record too many", "runner/evals/sql.py",
     '"execution_accuracy": correct / len(scorable) if scorable else 0.0',
     '"execution_accuracy": correct / (len(scorable) + 1) if scorable else 0.0',
     ["tests/test_sql_metric.py", "tests/test_eval_sql_literals.py"]),
    ("a skipped validation: memory never checked", "runner/validate.py",
     "    if est.total <= limit:\n        return\n    hint = []", "    if True:\n        return\n    hint = []",
     ["tests/test_memory.py", "tests/test_schema.py"]),
    ("schedule: auto epochs off by one", "runner/schedule.py",
     "return max(1, min(MAX_EPOCHS, math.ceil(EXAMPLES_PER_RUN / max(1, records))))",
     "return max(1, min(MAX_EPOCHS, math.ceil(EXAMPLES_PER_RUN / max(1, records)) + 1))", ["tests/test_schedule.py"]),
    ("curve: overfitting judged with the wrong sign", "runner/curve.py",
     "elif last - best > OVERFIT * best:", "elif best - last > OVERFIT * best:", ["tests/test_schedule.py",
                                                                                 "tests/test_progress.py"]),
    ("typo suggestions: nothing is ever close", "runner/errors.py",
     "n=1, cutoff=0.6)", "n=1, cutoff=1.0)", ["tests/test_cli.py", "tests/test_schema.py"]),
    ("signals: SIGTERM exits 128 + 14", "runner/signals.py",
     "self.exit_code = 128 + signum", "self.exit_code = 128 + signum - 1", ["tests/test_reliability.py"]),
    ("eval: base and tuned swapped in the summary", "runner/stages/evaluate.py",
     'lines.append([label, f"{base[key]:.{digits}f} → {tuned[key]:.{digits}f}  (base → tuned)"])',
     'lines.append([label, f"{tuned[key]:.{digits}f} → {base[key]:.{digits}f}  (base → tuned)"])',
     ["tests/test_eval_stage.py"]),
    ("placement: a card with 80 % of the memory counts as the one asked for", "runner/backends/placement.py",
     "MEMORY_SLACK = 0.9", "MEMORY_SLACK = 0.5", ["tests/test_placement.py"]),
    ("Modal: skipped stages not recorded in the container", "runner/backends/modal_app.py",
     '        folder.set_stage(skipped, "skipped", reason=reason)\n    try:', "        pass\n    try:",
     ["tests/test_modal_sweep.py"]),
    ("eval ahead: the base evaluated ahead is evaluated again", "runner/stages/evaluate.py",
     'if self.settings.base and "base" not in self.results:', "if self.settings.base:",
     ["tests/test_eval_standby.py"]),
]


def run(fault: tuple, python: str) -> tuple[str, float]:
    name, file, old, new, tests = fault
    path = ROOT / file
    original = path.read_text()
    if original.count(old) != 1:
        return f"NOT APPLIED (the text is in {file} {original.count(old)} times)", 0.0
    path.write_text(original.replace(old, new))
    started = time.monotonic()
    try:
        done = subprocess.run([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                              capture_output=True, text=True)
    finally:
        path.write_text(original)
    seconds = time.monotonic() - started
    if done.returncode == 0:
        return "SURVIVED", seconds
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M) or re.findall(r"^ERROR (\S+)", done.stdout, re.M)
    return (failed[0] if failed else f"pytest exit {done.returncode}"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=int, nargs="*", help="fault numbers (1-based)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = ["| # | fault | file | caught by |", "|---|---|---|---|"]
    survived = 0
    for number, fault in enumerate(FAULTS, start=1):
        if args.only and number not in args.only:
            continue
        outcome, seconds = run(fault, sys.executable)
        survived += outcome == "SURVIVED"
        rows.append(f"| {number} | {fault[0]} | `{fault[1]}` | {outcome} ({seconds:.0f} s) |")
        print(rows[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(rows) + "\n")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
