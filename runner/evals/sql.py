"""Text-to-SQL scoring: normalised exact match and execution accuracy.

Execution accuracy builds the schema named in a record's CREATE TABLE context in an
in-memory SQLite database, fills it with generated rows, and compares what the gold and
the predicted query return. Rows are generated from the literals both queries mention,
so WHERE filters match some rows instead of every query returning nothing.

Comparison rules (a choice; see `_canonical_value`):
- results are multisets of rows; order counts only when the gold query has a top-level
  ORDER BY;
- columns are compared in the order selected (``SELECT a, b`` differs from ``SELECT b, a``);
- numbers compare after rounding to 6 decimals, and strings that spell a number compare
  as that number ('1' equals 1 and 1.0), because sql-create-context stores numbers in
  VARCHAR columns;
- a query must agree on two differently seeded fillings, to make accidental agreement rare.

Run as ``python -m runner.evals.sql FILE.jsonl [--time-limit S]``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from runner.datacheck import json_lines
from runner.errors import UserError, report
from runner.evals.sql_database import QueryFailed, build_database, parse_schema, run_query
from runner.evals.sql_text import NUMERIC, extract_sql, has_top_level_order_by, is_query, normalize_sql

__all__ = ["extract_sql", "normalize_sql", "parse_schema", "build_database", "run_query", "QueryFailed",
           "results_match", "score_record", "score_records", "main"]

DEFAULT_TIME_LIMIT_S = 2.0
FILLING_SEEDS = (0, 1)


def _canonical_value(value):
    if isinstance(value, str) and NUMERIC.match(value):
        value = float(value)
    if isinstance(value, (int, float)):
        return round(float(value), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return value


def results_match(gold: list[tuple], predicted: list[tuple], ordered: bool) -> bool:
    gold_rows = [tuple(map(_canonical_value, row)) for row in gold]
    predicted_rows = [tuple(map(_canonical_value, row)) for row in predicted]
    return gold_rows == predicted_rows if ordered else Counter(gold_rows) == Counter(predicted_rows)


def score_record(record: dict, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> dict:
    """Scores one record (`context`, `answer` with [SQL] tags, raw `prediction`).

    Returns {"exact": bool, "execution": True/False/None, "gold_error": bool, "error": str|None};
    execution is None when the gold query does not run against its own context."""
    gold, predicted = extract_sql(record["answer"]), extract_sql(str(record.get("prediction") or ""))
    result = {"exact": normalize_sql(gold) == normalize_sql(predicted), "execution": None, "gold_error": False, "error": None,
              "query": is_query(predicted)}
    schema = parse_schema(record["context"])
    ordered = has_top_level_order_by(gold)
    for seed in FILLING_SEEDS:
        conn = build_database(schema, [gold, predicted], seed)
        try:
            try:
                gold_rows = run_query(conn, gold, time_limit_s)
            except QueryFailed as error:
                return {**result, "gold_error": True, "error": f"gold: {error}"}
            try:
                predicted_rows = run_query(conn, predicted, time_limit_s)
            except QueryFailed as error:
                return {**result, "execution": False, "error": f"prediction: {error}"}
        finally:
            conn.close()
        if not results_match(gold_rows, predicted_rows, ordered):
            return {**result, "execution": False}
    return {**result, "execution": True}


def score_records(records: list[dict], time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> dict:
    """Aggregate scores. Records whose gold query does not run are `gold_errors`: they count
    for exact match but not for execution accuracy. `invalid_predictions` counts scorable
    records whose prediction did not run. `per_record`: each record's `exact` and `execution` (None where the
    gold query does not run), for the base → tuned interval (runner.evals.bootstrap)."""
    details = [score_record(r, time_limit_s) for r in records]
    n = len(details)
    scorable = [d for d in details if not d["gold_error"]]
    correct = sum(d["execution"] is True for d in scorable)
    return {
        "n": n,
        "exact_match": sum(d["exact"] for d in details) / n if n else 0.0,
        "execution_accuracy": correct / len(scorable) if scorable else 0.0,
        "executable_n": len(scorable),
        "gold_errors": n - len(scorable),
        "invalid_predictions": sum(d["error"] is not None for d in scorable),
        "no_query": sum(not d["query"] for d in details),   # answers with no SELECT/WITH query to extract
        "per_record": [{"exact": d["exact"], "execution": None if d["gold_error"] else d["execution"]} for d in details],
    }


# --- command line -----------------------------------------------------------------------

REQUIRED_FIELDS = ("context", "answer", "prediction")


def read_records(path: str) -> list[dict]:
    """The records of a predictions file; a bad line is a UserError naming its number."""
    records = []
    try:
        for number, _, record in json_lines(Path(path)):
            if record is None:
                continue
            for field in REQUIRED_FIELDS:
                if not isinstance(record.get(field), str):
                    raise UserError(f"{path}:{number}: missing text field '{field}'")
            records.append(record)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.evals.sql", description="Score text-to-SQL predictions.")
    parser.add_argument("file", help="JSONL with context, answer and prediction per line")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, help="seconds per query")
    args = parser.parse_args(argv)
    if not args.time_limit > 0:
        print("error: --time-limit must be positive", file=sys.stderr)
        return 2
    try:
        records = read_records(args.file)
    except UserError as error:
        return report(error)
    scores = score_records(records, args.time_limit)
    print(json.dumps({k: v for k, v in scores.items() if k != "per_record"}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
