"""Execution for text-to-SQL scoring: parse (and repair) a CREATE TABLE context, build it in an
in-memory SQLite database filled with rows that exercise the queries' filters, and run a query under a
time limit, read-only."""

from __future__ import annotations

import random
import re
import sqlite3
import time

from runner.evals.sql_text import NUMERIC, literal_text, sql_tokens

MAX_RESULT_ROWS = 100_000
# Distinct values per column; also bounds table size when a prediction lists many literals.
MAX_POOL = 40
MIN_ROWS = 20
# Caps string/blob size so one function call (randomblob(1e9)) cannot outrun the deadline.
MAX_VALUE_BYTES = 1_000_000

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
            self._collect(sql_tokens(query))

    def _collect(self, tokens: list[tuple[str, str]]) -> None:
        for i, (kind, text) in enumerate(tokens):
            if kind == "op" and text in ("=", "==") and 0 < i < len(tokens) - 1:
                if tokens[i - 1][0] == "ident" and tokens[i + 1][0] == "ident":
                    self.joined.update({tokens[i - 1][1].lower(), tokens[i + 1][1].lower()})
            if kind not in ("str", "num"):
                continue
            value = literal_text(text) if kind == "str" else _number(text)
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
    return [value] if affinity == "text" or NUMERIC.match(value) else []


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
