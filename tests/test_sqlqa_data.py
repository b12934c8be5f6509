"""The shipped synthetic text-to-SQL splits: reproducible, runnable, disjoint."""

import json
import sqlite3

import pytest

from runner.data import sqlqa


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def shipped():
    return read_jsonl(sqlqa.TRAIN_PATH), read_jsonl(sqlqa.TEST_PATH)


def test_generate_is_deterministic():
    assert sqlqa.generate(300, seed=7) == sqlqa.generate(300, seed=7)
    assert sqlqa.generate(300, seed=7) != sqlqa.generate(300, seed=8)


def test_regenerating_reproduces_the_shipped_files_byte_for_byte():
    train, test = sqlqa.build_splits()
    assert sqlqa.to_jsonl(train) == sqlqa.TRAIN_PATH.read_text(encoding="utf-8")
    assert sqlqa.to_jsonl(test) == sqlqa.TEST_PATH.read_text(encoding="utf-8")


def test_split_sizes_and_schema(shipped):
    train, test = shipped
    assert (len(train), len(test)) == (sqlqa.TRAIN_SIZE, sqlqa.TEST_SIZE) == (3000, 200)
    for record in train + test:
        assert list(record) == ["question", "context", "answer"]
        assert record["context"].startswith("CREATE TABLE ")
        assert record["answer"].startswith("[SQL] SELECT ") and record["answer"].endswith(" [/SQL]")
        assert len(record["question"].split()) < sqlqa.MAX_QUESTION_WORDS


def test_every_gold_query_runs_against_its_own_context(shipped):
    for record in shipped[0] + shipped[1]:
        query = record["answer"].removeprefix("[SQL] ").removesuffix(" [/SQL]")
        conn = sqlite3.connect(":memory:")
        conn.executescript(record["context"])
        conn.execute(query).fetchall()
        conn.close()


def test_test_split_is_held_out(shipped):
    train, test = shipped
    train_pairs = {(r["question"], r["context"]) for r in train}
    train_questions = {r["question"] for r in train}
    assert not any((r["question"], r["context"]) in train_pairs for r in test)
    assert not any(r["question"] in train_questions for r in test)
    assert len({r["question"] for r in test}) == len(test)


def test_every_shape_and_both_context_sizes_occur(shipped):
    train, _ = shipped
    answers = " ".join(r["answer"] for r in train)
    for fragment in ("COUNT(*)", "MAX(", "MIN(", "AVG(", "SUM(", " > ", " < ", " DESC LIMIT ", "GROUP BY", " AND ", "DISTINCT"):
        assert fragment in answers
    two_tables = sum(r["context"].count("CREATE TABLE") == 2 for r in train)
    assert 0.2 * len(train) < two_tables < 0.5 * len(train)
