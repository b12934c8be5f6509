"""A synthetic text-to-SQL dataset in the sql-create-context format.

Each record is {"question", "context" (CREATE TABLE ...), "answer" ("[SQL] ... [/SQL]")}.
The language is templated and the vocabulary small on purpose: a tiny randomly
initialised model trained for minutes on CPU should learn it, because almost every
word of the answer is copied from the question or the context.

``python -m runner.data.sqlqa`` rewrites the shipped train/test files; the output is
byte-identical on every run (fixed seed, no set or dict-order dependence).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

SEED = 20240611
TRAIN_SIZE = 3000
TEST_SIZE = 200
DATA_DIR = Path(__file__).resolve().parent
TRAIN_PATH = DATA_DIR / "sqlqa-train.jsonl"
TEST_PATH = DATA_DIR / "sqlqa-test.jsonl"

# --- vocabulary: tables, columns and the values they hold -------------------------------

PEOPLE = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack")
CITIES = ("Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Boston", "Chicago", "Denver", "Seattle")
COUNTRIES = ("France", "Germany", "Spain", "Italy", "Japan", "Canada", "Brazil", "Egypt", "India", "Mexico")
ARTISTS = ("Adele", "Prince", "Madonna", "Sting", "Queen", "Shakira")
TEAMS = ("Eagles", "Tigers", "Sharks", "Lions", "Falcons", "Bears", "Wolves")

# table -> (plural noun, {column: values}); the column type follows from the values:
# strings -> TEXT, ints -> INTEGER, floats -> REAL.
DOMAINS: dict[str, tuple[str, dict[str, tuple]]] = {
    "employee": ("employees", {
        "name": PEOPLE, "department": ("sales", "marketing", "finance", "research", "support"),
        "city": CITIES, "age": tuple(range(25, 65, 5)), "salary": tuple(range(30000, 100000, 10000))}),
    "product": ("products", {
        "name": ("lamp", "chair", "desk", "phone", "kettle", "camera", "watch"),
        "category": ("home", "office", "electronics", "kitchen", "sports"),
        "brand": ("Acme", "Zenith", "Orion", "Nova", "Apex"),
        "price": (4.5, 9.5, 12.5, 19.5, 24.5, 49.5, 99.5), "stock": (0, 5, 10, 20, 50, 100)}),
    "city": ("cities", {
        "name": CITIES, "country": COUNTRIES, "population": tuple(range(100000, 1000000, 100000)),
        "area": (50.5, 120.5, 300.5, 600.5, 900.5), "founded": tuple(range(1200, 2000, 100))}),
    "student": ("students", {
        "name": PEOPLE, "major": ("math", "physics", "biology", "history", "art", "economics"),
        "hometown": CITIES, "year": (1, 2, 3, 4), "gpa": (2.5, 3.0, 3.5, 4.0)}),
    "flight": ("flights", {
        "airline": ("Delta", "United", "Lufthansa", "Emirates", "Qantas"), "origin": CITIES,
        "destination": CITIES, "distance": tuple(range(300, 3300, 300)), "passengers": tuple(range(50, 350, 50))}),
    "book": ("books", {
        "title": ("Dune", "Emma", "Ulysses", "Beloved", "Hamlet", "Walden", "Ivanhoe"),
        "author": ("Austen", "Joyce", "Morrison", "Tolkien", "Orwell", "Twain"),
        "genre": ("fantasy", "drama", "mystery", "poetry", "history"),
        "pages": tuple(range(100, 650, 50)), "published_year": tuple(range(1900, 2030, 20))}),
    "movie": ("movies", {
        "title": ("Alien", "Heat", "Rocky", "Jaws", "Up", "Frozen", "Psycho"),
        "director": ("Scott", "Mann", "Spielberg", "Hitchcock", "Nolan", "Kubrick"),
        "genre": ("action", "comedy", "drama", "horror", "animation"),
        "release_year": tuple(range(1960, 2030, 10)), "rating": (5.5, 6.5, 7.5, 8.5, 9.5)}),
    "song": ("songs", {
        "title": ("Yesterday", "Imagine", "Hello", "Roxanne", "Vogue", "Thriller"), "artist": ARTISTS,
        "genre": ("pop", "rock", "jazz", "soul", "folk"), "duration": tuple(range(180, 320, 20)),
        "plays": tuple(range(1000, 10000, 1000))}),
    "team": ("teams", {
        "name": TEAMS, "city": CITIES, "sport": ("football", "basketball", "hockey", "baseball"),
        "wins": tuple(range(0, 33, 3)), "losses": tuple(range(0, 33, 3))}),
    "player": ("players", {
        "name": PEOPLE, "team": TEAMS, "position": ("goalkeeper", "defender", "midfielder", "forward"),
        "age": tuple(range(18, 40, 2)), "goals": tuple(range(0, 32, 2))}),
    "doctor": ("doctors", {
        "name": PEOPLE, "specialty": ("cardiology", "surgery", "pediatrics", "neurology", "oncology"),
        "hospital": ("Mercy", "General", "Central", "Memorial", "Riverside"), "age": tuple(range(30, 70, 5)),
        "patients": tuple(range(10, 110, 10))}),
    "restaurant": ("restaurants", {
        "name": ("Luigi", "Sakura", "Bistro", "Taj", "Olive", "Dragon"),
        "cuisine": ("italian", "japanese", "french", "indian", "mexican", "chinese"), "city": CITIES,
        "rating": (3.0, 3.5, 4.0, 4.5, 5.0), "seats": tuple(range(20, 140, 20))}),
    "car": ("cars", {
        "model": ("Civic", "Corolla", "Golf", "Mustang", "Focus", "Camry"),
        "make": ("Honda", "Toyota", "Volkswagen", "Ford", "Tesla"),
        "color": ("red", "blue", "green", "black", "white", "silver"),
        "year": tuple(range(2010, 2026, 2)), "price": tuple(range(15000, 65000, 5000))}),
    "course": ("courses", {
        "title": ("Algebra", "Chemistry", "Poetry", "Databases", "Genetics", "Painting"),
        "department": ("math", "science", "arts", "engineering"), "instructor": PEOPLE,
        "credits": (1, 2, 3, 4, 5), "enrollment": tuple(range(20, 220, 20))}),
    "store": ("stores", {
        "name": ("Northside", "Downtown", "Riverside", "Uptown", "Harbor"), "city": CITIES,
        "manager": PEOPLE, "num_employees": tuple(range(5, 55, 5)), "revenue": (1.5, 2.5, 4.5, 6.5, 9.5)}),
    "airport": ("airports", {
        "name": ("Heathrow", "Narita", "Logan", "Tegel", "Barajas", "Midway"), "city": CITIES,
        "country": COUNTRIES, "runways": (1, 2, 3, 4, 5, 6), "annual_passengers": tuple(range(5, 85, 5))}),
    "ship": ("ships", {
        "name": ("Aurora", "Neptune", "Orion", "Titan", "Voyager", "Endeavour"),
        "ship_type": ("cargo", "tanker", "ferry", "cruise"), "flag": COUNTRIES,
        "tonnage": (2000, 5000, 8000, 12000, 20000, 30000), "built_year": tuple(range(1980, 2025, 5))}),
    "museum": ("museums", {
        "name": ("Louvre", "Prado", "Uffizi", "Tate", "Met", "Hermitage"), "city": CITIES,
        "open_year": tuple(range(1750, 2000, 25)), "visitors": tuple(range(100000, 1000000, 100000)),
        "num_staff": tuple(range(10, 210, 20))}),
    "hotel": ("hotels", {
        "name": ("Ritz", "Savoy", "Plaza", "Grand", "Regent", "Majestic"), "city": CITIES,
        "stars": (1, 2, 3, 4, 5), "rooms": tuple(range(50, 550, 50)), "price": (79.5, 99.5, 149.5, 199.5, 299.5)}),
    "school": ("schools", {
        "name": ("Lincoln", "Roosevelt", "Jefferson", "Franklin", "Madison", "Kennedy"), "city": CITIES,
        "school_type": ("public", "private", "charter"), "students": tuple(range(200, 2200, 200)),
        "founded": tuple(range(1850, 2025, 25))}),
    "mountain": ("mountains", {
        "name": ("Everest", "Denali", "Elbrus", "Fuji", "Olympus", "Kilimanjaro"), "country": COUNTRIES,
        "mountain_range": ("Alps", "Andes", "Rockies", "Himalaya", "Atlas"),
        "height": tuple(range(1000, 9500, 500)), "first_ascent": tuple(range(1850, 1990, 10))}),
    "concert": ("concerts", {
        "artist": ARTISTS, "venue": ("Arena", "Stadium", "Theater", "Hall", "Park"), "city": CITIES,
        "concert_year": tuple(range(2000, 2026, 2)), "attendance": tuple(range(1000, 51000, 5000))}),
}

# --- query shapes: (weight, SQL pattern, question templates) ----------------------------
# Slots: {t} table, {ts} plural, {A} {C} selected columns, {B} = {v} an equality filter,
# {N} {op} {k} a numeric comparison, {F} an aggregate, {w} its wording, {dir} / {most}.

SHAPES: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "select_eq": (26, "SELECT {a} FROM {t} WHERE {b} = {v}", (
        "What is the {A} of the {t} whose {B} is {q}?", "Find the {A} of {ts} with {B} {q}.",
        "List the {A} of all {ts} whose {B} is {q}.", "Which {A} does the {t} with {B} {q} have?")),
    "count_eq": (10, "SELECT COUNT(*) FROM {t} WHERE {b} = {v}", (
        "How many {ts} have {B} {q}?", "Count the {ts} whose {B} is {q}.",
        "What is the number of {ts} with {B} {q}?")),
    "aggregate": (6, "SELECT {F}({n}) FROM {t}", (
        "What is the {w} {N} of all {ts}?", "Find the {w} {N} of {ts}.")),
    "aggregate_eq": (7, "SELECT {F}({n}) FROM {t} WHERE {b} = {v}", (
        "What is the {w} {N} of {ts} whose {B} is {q}?", "Find the {w} {N} of {ts} with {B} {q}.")),
    "select_cmp": (10, "SELECT {a} FROM {t} WHERE {n} {op} {k}", (
        "List the {A} of {ts} with {N} {cmp} {k}.", "What are the {A} of {ts} whose {N} is {cmp} {k}?")),
    "count_cmp": (6, "SELECT COUNT(*) FROM {t} WHERE {n} {op} {k}", (
        "How many {ts} have {N} {cmp} {k}?", "Count the {ts} whose {N} is {cmp} {k}.")),
    "top_one": (6, "SELECT {a} FROM {t} ORDER BY {n} {dir} LIMIT 1", (
        "What is the {A} of the {t} with the {most} {N}?", "Find the {A} of the {t} with the {most} {N}.")),
    "top_k": (4, "SELECT {a} FROM {t} ORDER BY {n} {dir} LIMIT {limit}", (
        "List the {A} of the {limit} {ts} with the {most} {N}.",)),
    "ordered": (4, "SELECT {a} FROM {t} ORDER BY {n} {dir}", (
        "List the {A} of all {ts} ordered by {N} {order}.", "Sort the {ts} by {N} {order} and show their {A}.")),
    "group_count": (8, "SELECT {b}, COUNT(*) FROM {t} GROUP BY {b}", (
        "How many {ts} are there for each {B}?", "Show each {B} and the number of {ts}.")),
    "and": (9, "SELECT {a} FROM {t} WHERE {b} = {v} AND {n} {op} {k}", (
        "List the {A} of {ts} whose {B} is {q} and {N} is {cmp} {k}.",
        "Which {A} belong to {ts} with {B} {q} and {N} {cmp} {k}?")),
    "distinct": (4, "SELECT DISTINCT {b} FROM {t}", (
        "List the distinct {B} of all {ts}.", "What are the different {B} values of {ts}?")),
    "two_columns": (4, "SELECT {a}, {c} FROM {t} WHERE {b} = {v}", (
        "What are the {A} and {C} of {ts} whose {B} is {q}?", "Show the {A} and {C} of {ts} with {B} {q}.")),
}
AGGREGATES = (("MAX", "highest"), ("MAX", "maximum"), ("MIN", "lowest"), ("MIN", "minimum"),
              ("AVG", "average"), ("SUM", "total"))
COMPARISONS = ((">", "greater than"), (">", "more than"), (">", "above"), ("<", "less than"),
               ("<", "below"), ("<", "under"))
DIRECTIONS = (("DESC", "highest", "descending"), ("ASC", "lowest", "ascending"))
MAX_QUESTION_WORDS = 25


def column_type(values: tuple) -> str:
    return "TEXT" if isinstance(values[0], str) else "REAL" if isinstance(values[0], float) else "INTEGER"


def sql_literal(value) -> str:
    return "'" + value + "'" if isinstance(value, str) else str(value)


def _phrase(name: str) -> str:
    return name.replace("_", " ")


def _create_table(table: str, columns: list[str]) -> str:
    types = DOMAINS[table][1]
    return f"CREATE TABLE {table} (" + ", ".join(f"{c} {column_type(types[c])}" for c in columns) + ")"


def _context(rng: random.Random, table: str, used: list[str]) -> str:
    """The query's table with its used columns plus some others (3-5 in all, in domain
    order), and sometimes an unrelated second table before or after it."""
    all_columns = list(DOMAINS[table][1])
    size = rng.randint(max(3, len(used)), len(all_columns))
    chosen = set(used) | set(rng.sample([c for c in all_columns if c not in used], size - len(used)))
    tables = [_create_table(table, [c for c in all_columns if c in chosen])]
    if rng.random() < 0.35:
        other = rng.choice([t for t in DOMAINS if t != table])
        other_columns = list(DOMAINS[other][1])
        keep = set(rng.sample(other_columns, rng.randint(3, len(other_columns))))
        tables.insert(rng.randint(0, 1), _create_table(other, [c for c in other_columns if c in keep]))
    return "; ".join(tables)


def _slots(rng: random.Random, table: str) -> tuple[dict, dict]:
    """Random fillers for every slot a shape may use, plus the columns each one names."""
    plural, columns = DOMAINS[table]
    names = list(columns)
    numeric = [c for c in names if column_type(columns[c]) != "TEXT"]
    b = rng.choice([c for c in names if column_type(columns[c]) == "TEXT"] * 3 + numeric)
    n = rng.choice([c for c in numeric if c != b])
    a = rng.choice([c for c in names if c not in (b, n)])
    c = rng.choice([x for x in names if x not in (a, b)])
    v = rng.choice(columns[b])
    function, wording = rng.choice(AGGREGATES)
    op, cmp = rng.choice(COMPARISONS)
    direction, most, order = rng.choice(DIRECTIONS)
    slots = {
        "t": table, "ts": plural, "a": a, "A": _phrase(a), "b": b, "B": _phrase(b), "c": c, "C": _phrase(c),
        "n": n, "N": _phrase(n), "v": sql_literal(v), "q": v, "k": rng.choice(columns[n]),
        "F": function, "w": wording, "op": op, "cmp": cmp, "dir": direction, "most": most, "order": order,
        "limit": rng.choice((3, 5)),
    }
    return slots, {"a": a, "b": b, "c": c, "n": n}


def _used_columns(pattern: str, named: dict) -> list[str]:
    return [column for slot, column in named.items() if "{" + slot + "}" in pattern]


def check_gold_runs(context: str, query: str) -> None:
    """Raises if `query` does not run against the tables `context` creates."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(context)
        conn.execute(query).fetchall()
    finally:
        conn.close()


def make_record(rng: random.Random) -> dict:
    shape = rng.choices(list(SHAPES), weights=[w for w, _, _ in SHAPES.values()])[0]
    _, pattern, questions = SHAPES[shape]
    table = rng.choice(list(DOMAINS))
    slots, named = _slots(rng, table)
    query = pattern.format(**slots)
    question = rng.choice(questions).format(**slots)
    context = _context(rng, table, _used_columns(pattern, named))
    check_gold_runs(context, query)
    assert len(question.split()) < MAX_QUESTION_WORDS, question
    return {"question": question, "context": context, "answer": f"[SQL] {query} [/SQL]"}


def generate(n: int, seed: int = SEED) -> list[dict]:
    """`n` records with distinct questions, in a fixed order for a given seed."""
    rng = random.Random(seed)
    records, seen = [], set()
    for _ in range(n * 50):
        if len(records) == n:
            break
        record = make_record(rng)
        if record["question"] not in seen:
            seen.add(record["question"])
            records.append(record)
    if len(records) == n:
        return records
    raise RuntimeError(f"only {len(records)} distinct questions found for n={n}")


def build_splits(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(train, test): distinct questions, so no test question+context appears in train."""
    records = generate(TRAIN_SIZE + TEST_SIZE, seed)
    return records[:TRAIN_SIZE], records[TRAIN_SIZE:]


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    os.replace(temporary, path)


def main() -> int:
    train, test = build_splits()
    write_atomically(TRAIN_PATH, to_jsonl(train))
    write_atomically(TEST_PATH, to_jsonl(test))
    print(f"wrote {len(train)} records to {TRAIN_PATH} and {len(test)} to {TEST_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
