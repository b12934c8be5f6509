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
import random
import re
import sqlite3
import sys
import time
from collections import Counter

DEFAULT_TIME_LIMIT_S = 2.0
FILLING_SEEDS = (0, 1)
MAX_RESULT_ROWS = 100_000
# Distinct values per column; also bounds table size when a prediction lists many literals.
MAX_POOL = 40
MIN_ROWS = 20
# Caps string/blob size so one function call (randomblob(1e9)) cannot outrun the deadline.
MAX_VALUE_BYTES = 1_000_000

# --- text: extraction, tokens, normalisation ------------------------------------------

_TAGGED = re.compile(r"\[SQL\](.*?)(?:\[/SQL\]|$)", re.S | re.I)
_NUMERIC = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_CLOSE_ONLY = re.compile(r"^(.*?)\[/SQL\]", re.S | re.I)
_TOKEN = re.compile(
    r"""(?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z_0-9$]*|`[^`]*`|\[[^\]]*\])
      | (?P<op><=|>=|<>|!=|==|\|\||[-+*/%<>=(),.;])
      | (?P<other>\S)""",
    re.X,
)


def extract_sql(text: str) -> str:
    """The query between [SQL] and [/SQL]; tolerates a missing tag or surrounding text."""
    tagged = _TAGGED.search(text)
    if tagged:
        return tagged.group(1).strip()
    close_only = _CLOSE_ONLY.search(text)
    return (close_only.group(1) if close_only else text).strip()


def _tokens(sql: str) -> list[tuple[str, str]]:
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(sql)]


def _literal_text(token: str) -> str:
    quote = token[0]
    return token[1:-1].replace(quote * 2, quote)


def normalize_sql(query: str) -> str:
    """A canonical spelling for exact match: case-folded outside literals, one space between
    tokens, single-quoted literals (the dataset writes literals in double quotes too),
    no trailing semicolon."""
    words = []
    for kind, text in _tokens(query):
        if kind == "str":
            words.append("'" + _literal_text(text).replace("'", "''") + "'")
        elif kind == "ident":
            words.append(text.strip("`[]").lower())
        elif text in ("!=", "=="):
            words.append({"!=": "<>", "==": "="}[text])
        else:
            words.append(text.lower())
    while words and words[-1] == ";":
        words.pop()
    return " ".join(words)


def _has_top_level_order_by(query: str) -> bool:
    depth, previous = 0, ""
    for kind, text in _tokens(query):
        word = text.lower()
        depth += {"(": 1, ")": -1}.get(word, 0)
        if depth == 0 and previous == "order" and word == "by":
            return True
        previous = word if kind == "ident" else ""
    return False


# --- schema: parse and repair the context -----------------------------------------------

_CREATE = re.compile(r'CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[`"\[]?(\w+)[`"\]]?\s*\(', re.I)
_CONSTRAINT = re.compile(r"(PRIMARY|FOREIGN|UNIQUE|CHECK|CONSTRAINT)\b", re.I)


def _split_top_level(body: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _closing_paren(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text)


def parse_schema(context: str) -> dict[str, dict[str, str]]:
    """Tables in `context` as {table: {column: type}}, repaired: a table declared twice
    keeps the union of its columns, and a column declared twice keeps its first type
    (SQLite names are case-insensitive, so duplicates are matched case-insensitively)."""
    tables: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for match in _CREATE.finditer(context):
        table = names.setdefault(match.group(1).lower(), match.group(1))
        columns = tables.setdefault(table, {})
        known = {c.lower() for c in columns}
        body = context[match.end() : _closing_paren(context, match.end() - 1)]
        for definition in _split_top_level(body):
            if _CONSTRAINT.match(definition):
                continue
            name, _, sql_type = definition.partition(" ")
            name = name.strip('`"[]')
            if name and name.lower() not in known:
                known.add(name.lower())
                columns[name] = re.sub(r"[^\w\s(),]", "", sql_type).strip()
    return {table: columns for table, columns in tables.items() if columns}


def _affinity(sql_type: str) -> str:
    upper = sql_type.upper()
    if "INT" in upper:
        return "int"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB", "NUM", "DEC")):
        return "real"
    return "text"


# --- filling: rows that make filters match ----------------------------------------------

_KEY_NAME = re.compile(r"(id|_code|^code|_no|_key|_number)$", re.I)
_DISTRACTOR_WORDS = ("Alpha", "Bravo", "Delta", "North", "Smith", "red", "Yes", "No", "x", "2005")
_COMPARISON = {"=", "<>", "!=", "==", "<", ">", "<=", ">=", "like", "between", "and", "in", "("}


class _Literals:
    """Literals of the scored queries, tied to a column where `col OP literal` says which."""

    def __init__(self, queries: list[str]):
        self.by_column: dict[str, list] = {}
        self.free: list = []
        self.joined: set[str] = set()
        for query in queries:
            self._collect(_tokens(query))

    def _collect(self, tokens: list[tuple[str, str]]) -> None:
        for i, (kind, text) in enumerate(tokens):
            if kind == "op" and text in ("=", "==") and 0 < i < len(tokens) - 1:
                if tokens[i - 1][0] == "ident" and tokens[i + 1][0] == "ident":
                    self.joined.update({tokens[i - 1][1].lower(), tokens[i + 1][1].lower()})
            if kind not in ("str", "num"):
                continue
            value = _literal_text(text) if kind == "str" else _number(text)
            column = self._column_before(tokens, i)
            if column:
                self.by_column.setdefault(column, []).append(value)
            else:
                self.free.append(value)

    @staticmethod
    def _column_before(tokens: list[tuple[str, str]], i: int) -> str | None:
        j = i - 1
        while j >= 1 and (tokens[j][1].lower() in _COMPARISON or tokens[j][0] in ("str", "num")):
            if tokens[j - 1][0] == "ident" and tokens[j - 1][1].lower() not in _COMPARISON:
                return tokens[j - 1][1].lower()
            j -= 1
        return None


# SQLite integers are 64-bit; a (generated) literal beyond that range is stored as a REAL.
_SQLITE_INT_LIMIT = 2**63 - 2


def _number(text: str) -> int | float:
    value = float(text)
    if value.is_integer() and "." not in text and "e" not in text.lower() and abs(int(text)) < _SQLITE_INT_LIMIT:
        return int(text)
    return value


def _variants(value, affinity: str) -> list:
    """The value plus neighbours, so `age > 56` and `age >= 56` select different rows."""
    if isinstance(value, (int, float)):
        return [value, value + 1, value - 1]
    if "%" in value or "_" in value:  # a LIKE pattern: store text that matches it
        return [value.replace("%", "").replace("_", " "), value]
    return [value] if affinity == "text" or _NUMERIC.match(value) else []


def _column_pool(column: str, sql_type: str, literals: _Literals, rng: random.Random) -> tuple[list, list]:
    """(values the queries mention, filler values) for one column."""
    affinity = _affinity(sql_type)
    hinted: list = []
    for value in literals.by_column.get(column.lower(), []):
        hinted += _variants(value, "text")
    for value in literals.free:
        hinted += _variants(value, affinity)
    if _KEY_NAME.search(column) or column.lower() in literals.joined:
        filler = [1, 2, 3, 4, 5]  # shared small keys, so joins find partners
    elif affinity == "text":
        filler = rng.sample(_DISTRACTOR_WORDS, 4) + [rng.randint(0, 100)]
    else:
        filler = [rng.randint(0, 100) if affinity == "int" else round(rng.uniform(0, 100), 2) for _ in range(4)]
    hinted = list(dict.fromkeys(hinted))[:MAX_POOL]
    return hinted, [v for v in dict.fromkeys(filler) if v not in hinted]


def _fill_rows(columns: dict[str, str], literals: _Literals, rng: random.Random) -> list[tuple]:
    pools = [_column_pool(c, t, literals, rng) for c, t in columns.items()]
    # Row 0 holds every column's first literal together, so AND filters can match; next,
    # every pool value at least once; then random rows that favour the mentioned values,
    # so counts and sums differ between a right and a wrong filter; then two duplicates.
    everything = [hinted + filler for hinted, filler in pools]
    orders = [[p[0]] + rng.sample(p[1:], len(p) - 1) for p in everything]
    n_full = max(len(p) for p in everything)
    rows = [tuple(o[i] if i < len(o) else rng.choice(o) for o in orders) for i in range(n_full)]
    # Skewed weights give mentioned values different frequencies, so COUNT(*) of a wrong
    # literal rarely equals COUNT(*) of the right one by symmetry.
    skewed = [rng.sample(h, len(h)) for h, _ in pools]
    for _ in range(MIN_ROWS - n_full if n_full < MIN_ROWS else 4):
        rows.append(tuple(_pick(rng, s, h + f) for s, (h, f) in zip(skewed, pools)))
    return rows + rng.sample(rows, 2)


def _pick(rng: random.Random, skewed: list, everything: list):
    if skewed and rng.random() < 0.6:
        return rng.choices(skewed, weights=[0.5**k for k in range(len(skewed))])[0]
    return rng.choice(everything)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build_database(schema: dict[str, dict[str, str]], queries: list[str], seed: int) -> sqlite3.Connection:
    """An in-memory database with `schema`, filled for `queries`, then made read-only."""
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    literals = _Literals(queries)
    for table, columns in schema.items():
        rng = random.Random(f"{seed}:{table.lower()}")
        conn.execute(f"CREATE TABLE {_quote(table)} ({', '.join(f'{_quote(c)} {t}' for c, t in columns.items())})")
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {_quote(table)} VALUES ({marks})", _fill_rows(columns, literals, rng))
    conn.commit()
    conn.set_authorizer(_read_only)
    return conn


_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


def _read_only(action: int, *_args) -> int:
    """Predictions may only read: no writes, ATTACH or PRAGMA against the scoring database."""
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


# --- execution and comparison -----------------------------------------------------------

class QueryFailed(Exception):
    """A query did not run: a syntax/schema error, a timeout or an oversized result."""


def run_query(conn: sqlite3.Connection, query: str, time_limit_s: float) -> list[tuple]:
    deadline = time.monotonic() + time_limit_s
    # SQLite calls the handler every 1000 VM steps; a non-zero return aborts the query.
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        cursor = conn.execute(query.strip().rstrip(";"))
        if cursor.description is None:  # empty text or only a comment: no statement ran
            raise QueryFailed("no query")
        rows = cursor.fetchmany(MAX_RESULT_ROWS + 1)
    except QueryFailed:
        raise
    except sqlite3.OperationalError as error:
        raise QueryFailed("time limit exceeded" if str(error) == "interrupted" else str(error)) from None
    except Exception as error:  # anything a malformed query triggers counts as a failure
        raise QueryFailed(str(error) or type(error).__name__) from None
    finally:
        conn.set_progress_handler(None, 0)
    if len(rows) > MAX_RESULT_ROWS:
        raise QueryFailed(f"more than {MAX_RESULT_ROWS} result rows")
    return rows


def _canonical_value(value):
    if isinstance(value, str) and _NUMERIC.match(value):
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
    result = {"exact": normalize_sql(gold) == normalize_sql(predicted), "execution": None, "gold_error": False, "error": None}
    schema = parse_schema(record["context"])
    ordered = _has_top_level_order_by(gold)
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
    records whose prediction did not run."""
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
    }


# --- command line -----------------------------------------------------------------------

REQUIRED_FIELDS = ("context", "answer", "prediction")


class InputError(Exception):
    """Bad input file; the message is the one line shown to the user."""


def read_records(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        for field in REQUIRED_FIELDS:
            if not isinstance(record.get(field), str):
                raise InputError(f"{path}:{number}: missing text field '{field}'")
        records.append(record)
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
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(score_records(records, args.time_limit), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
