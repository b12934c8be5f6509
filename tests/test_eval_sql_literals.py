"""Scoring survives what an untrained model writes: numbers beyond SQLite's 64-bit integers."""

from runner.evals.sql import score_record, score_records

CONTEXT = "CREATE TABLE t (a INTEGER, b TEXT)"


def test_huge_numeric_literals_in_a_prediction_are_a_wrong_answer_not_a_crash():
    record = {"context": CONTEXT, "answer": "[SQL] SELECT a FROM t WHERE a = 5 [/SQL]",
              "prediction": "SELECT a FROM t WHERE a = 99999999999999999999999 OR a = 1e999 OR a = 9223372036854775807"}
    assert score_record(record) == {"exact": False, "execution": False, "gold_error": False, "error": None, "query": True}


def test_integers_inside_the_range_still_match_exactly():
    record = {"context": CONTEXT, "answer": "[SQL] SELECT b FROM t WHERE a = 9007199254740993 [/SQL]",
              "prediction": "[SQL] SELECT b FROM t WHERE a = 9007199254740993 [/SQL]"}
    assert score_records([record])["execution_accuracy"] == 1.0
