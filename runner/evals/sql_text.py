"""SQL text: the query inside [SQL] tags, its tokens, and a normal form for exact match."""

from __future__ import annotations

import re

# --- text: extraction, tokens, normalisation ------------------------------------------

_TAGGED = re.compile(r"\[SQL\](.*?)(?:\[/SQL\]|$)", re.S | re.I)
NUMERIC = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_CLOSE_ONLY = re.compile(r"^(.*?)\[/SQL\]", re.S | re.I)
_FENCED = re.compile(r"```[ \t]*(?:sql|sqlite)?[ \t]*\n?(.*?)(?:```|$)", re.S | re.I)
# where a query starts in prose: SELECT, or a WITH clause (WITH name AS ( ...), not the English word
_QUERY_START = re.compile(r"\bSELECT\b|\bWITH\s+(?:RECURSIVE\s+)?\w+\s*(?:\([^)]*\))?\s*AS\s*\(", re.I)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_TOKEN = re.compile(
    r"""(?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z_0-9$]*|`[^`]*`|\[[^\]]*\])
      | (?P<op><=|>=|<>|!=|==|\|\||[-+*/%<>=(),.;])
      | (?P<other>\S)""",
    re.X,
)


def extract_sql(text: str) -> str:
    """The query between [SQL] and [/SQL]; tolerates a missing tag or surrounding text. Without tags, what
    instruct models write instead: a fenced code block (```sql ... ```), or a query after a sentence of
    prose ("Here is the query: SELECT ...") and before an explanation set off by a blank line."""
    tagged = _TAGGED.search(text)
    if tagged:
        return tagged.group(1).strip()
    close_only = _CLOSE_ONLY.search(text)
    if close_only:
        return close_only.group(1).strip()
    fenced = _FENCED.search(text)
    if fenced:
        return _the_query(fenced.group(1)).strip()
    return _PARAGRAPH_BREAK.split(_the_query(text).strip(), maxsplit=1)[0].strip()


def is_query(text: str) -> bool:
    """An extracted answer that is a query (starts with SELECT or a WITH clause), not prose or a schema."""
    return bool(_QUERY_START.match(text.lstrip()))


def _the_query(text: str) -> str:
    """From the query on: past a sentence of prose, and past the schema's CREATE TABLE statements that
    small models echo before the query (a SELECT or WITH further on)."""
    text = text.lstrip()
    if _QUERY_START.match(text):
        return text
    later = _QUERY_START.search(text)
    return text[later.start():] if later else text


def sql_tokens(sql: str) -> list[tuple[str, str]]:
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(sql)]


def literal_text(token: str) -> str:
    quote = token[0]
    return token[1:-1].replace(quote * 2, quote)


def normalize_sql(query: str) -> str:
    """A canonical spelling for exact match: case-folded outside literals, one space between
    tokens, single-quoted literals (the dataset writes literals in double quotes too),
    no trailing semicolon."""
    words = []
    for kind, text in sql_tokens(query):
        if kind == "str":
            words.append("'" + literal_text(text).replace("'", "''") + "'")
        elif kind == "ident":
            words.append(text.strip("`[]").lower())
        elif text in ("!=", "=="):
            words.append({"!=": "<>", "==": "="}[text])
        else:
            words.append(text.lower())
    while words and words[-1] == ";":
        words.pop()
    return " ".join(words)


def has_top_level_order_by(query: str) -> bool:
    depth, previous = 0, ""
    for kind, text in sql_tokens(query):
        word = text.lower()
        depth += {"(": 1, ")": -1}.get(word, 0)
        if depth == 0 and previous == "order" and word == "by":
            return True
        previous = word if kind == "ident" else ""
    return False
