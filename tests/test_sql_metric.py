"""Text-to-SQL scoring: extraction, normalisation, execution accuracy, time limit, CLI."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.evals.sql import extract_sql, normalize_sql, parse_schema, score_record, score_records

REPO = Path(__file__).resolve().parents[1]
PEOPLE = "CREATE TABLE t (name VARCHAR, age INTEGER, city VARCHAR)"


def record(prediction, gold="SELECT name FROM t WHERE age > 30", context=PEOPLE):
    return {"context": context, "answer": f"[SQL] {gold} [/SQL]", "prediction": prediction}


@pytest.mark.parametrize(
    "text, query",
    [
        ("[SQL] SELECT 1 [/SQL]", "SELECT 1"),
        ("Sure! [SQL] SELECT a FROM t [/SQL] hope this helps", "SELECT a FROM t"),
        ("[SQL] SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1"),
        ("SELECT a FROM t [/SQL] trailing", "SELECT a FROM t"),
        ("  SELECT a FROM t  \n", "SELECT a FROM t"),
        # what instruct models write without the tags
        ("```sql\nSELECT a\nFROM t\n```\nThis returns every a.", "SELECT a\nFROM t"),
        ("```\nSELECT a FROM t", "SELECT a FROM t"),
        ("Here is the query: SELECT a FROM t WHERE b = 'x'\n\nIt selects the a of rows whose b is x.",
         "SELECT a FROM t WHERE b = 'x'"),
        ("To answer this, use WITH x AS (SELECT a FROM t) SELECT * FROM x", "WITH x AS (SELECT a FROM t) SELECT * FROM x"),
        ("I cannot answer that with a query.", "I cannot answer that with a query."),
    ],
)
def test_extract_sql(text, query):
    assert extract_sql(text) == query


def test_normalize_sql_ignores_case_spacing_quotes_and_semicolon_but_not_literal_case():
    assert normalize_sql('select  NAME from T where city="Paris" ;') == normalize_sql("SELECT name FROM t WHERE city = 'Paris'")
    assert normalize_sql("SELECT COUNT(*) FROM t") == normalize_sql("select count ( * ) from t")
    assert normalize_sql("SELECT a FROM t WHERE b != 1") == normalize_sql("SELECT a FROM t WHERE b <> 1")
    assert normalize_sql("SELECT a FROM t WHERE c = 'Paris'") != normalize_sql("SELECT a FROM t WHERE c = 'paris'")


def test_exact_prediction_scores_on_both_metrics():
    result = score_record(record("[SQL] SELECT name FROM t WHERE age > 30 [/SQL]"))
    assert result == {"exact": True, "execution": True, "gold_error": False, "error": None, "query": True}


def test_equivalent_query_with_different_text_agrees_on_execution():
    result = score_record(record("select NAME from t where 30 < age"))
    assert result["execution"] is True and result["exact"] is False


@pytest.mark.parametrize(
    "prediction",
    [
        "SELECT city FROM t WHERE age > 30",  # wrong column
        "SELECT name FROM t WHERE age > 31",  # wrong filter value
        "SELECT name FROM t WHERE age >= 30",  # wrong operator
        "SELECT name FROM t",  # missing filter
    ],
)
def test_wrong_queries_fail_execution(prediction):
    assert score_record(record(prediction))["execution"] is False


def test_wrong_string_literal_fails_execution():
    gold = "SELECT COUNT(*) FROM t WHERE city = 'Paris'"
    assert score_record(record("SELECT COUNT(*) FROM t WHERE city = 'Rome'", gold))["execution"] is False


@pytest.mark.parametrize("prediction", ["SELEC name FROM t", "SELECT nope FROM t", "DROP TABLE t", "SELECT 1; SELECT 2", ""])
def test_invalid_prediction_is_wrong_not_a_crash(prediction):
    result = score_record(record(prediction))
    assert result["execution"] is False and result["error"].startswith("prediction:")


def test_order_matters_only_when_gold_orders():
    ordered_gold = "SELECT name FROM t ORDER BY age DESC"
    assert score_record(record("SELECT name FROM t ORDER BY age ASC", ordered_gold))["execution"] is False
    assert score_record(record("SELECT name FROM t ORDER BY age DESC", "SELECT name FROM t"))["execution"] is True


def test_gold_that_does_not_run_is_a_gold_error_left_out_of_execution_accuracy():
    broken = record("SELECT missing FROM t", gold="SELECT missing FROM t")
    good = record("SELECT name FROM t WHERE age > 30")
    scores = score_records([broken, good])
    assert score_record(broken)["gold_error"] is True and score_record(broken)["execution"] is None
    assert scores["n"] == 2 and scores["gold_errors"] == 1 and scores["executable_n"] == 1
    assert scores["execution_accuracy"] == 1.0 and scores["exact_match"] == 1.0


def test_table_declared_twice_is_merged():
    context = "CREATE TABLE station (name VARCHAR, id VARCHAR); CREATE TABLE station (name VARCHAR, id VARCHAR, city VARCHAR)"
    assert parse_schema(context) == {"station": {"name": "VARCHAR", "id": "VARCHAR", "city": "VARCHAR"}}
    gold = "SELECT name FROM station WHERE city = 'San Jose'"
    assert score_record(record(gold, gold, context))["execution"] is True


def test_endless_query_is_cut_off_at_the_time_limit():
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    started = time.monotonic()
    result = score_record(record(endless), time_limit_s=0.5)
    assert time.monotonic() - started < 60   # cut off, not run to the end (which never comes)
    assert result["execution"] is False and "time limit" in result["error"]


def test_empty_input_scores_zero():
    assert score_records([]) == {
        "n": 0, "exact_match": 0.0, "execution_accuracy": 0.0, "executable_n": 0, "gold_errors": 0, "invalid_predictions": 0,
        "no_query": 0, "per_record": [],
    }


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "runner.evals.sql", *args], cwd=REPO, capture_output=True, text=True)


def test_cli_prints_one_json_object(tmp_path):
    path = tmp_path / "predictions.jsonl"
    lines = [record("SELECT name FROM t WHERE age > 30"), record("SELECT city FROM t")]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    completed = run_cli(str(path), "--time-limit", "1")
    assert completed.returncode == 0, completed.stderr
    scores = json.loads(completed.stdout)
    assert scores["n"] == 2 and scores["execution_accuracy"] == 0.5 and scores["invalid_predictions"] == 0


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "cannot read"),
        ('{"context": "x", "answer": "y", "prediction": "z"}\nnot json\n', ":2: not valid JSON"),
        ('{"context": "x", "answer": "y"}\n', ":1: missing text field 'prediction'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "predictions.jsonl"
    if content is not None:
        path.write_text(content)
    completed = run_cli(str(path))
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("error: ")
    assert str(path) in completed.stderr and expected in completed.stderr


def test_real_data_gold_against_itself_scores_perfectly(real_sqlqa):
    records = [json.loads(line) for line in real_sqlqa.read_text().splitlines()][:600]
    scores = score_records([{**r, "prediction": r["answer"]} for r in records])
    assert scores["execution_accuracy"] == 1.0 and scores["exact_match"] == 1.0
    assert 0 < scores["gold_errors"] < 0.15 * len(records)


def test_answers_without_a_query_are_counted():
    prose = {"question": "q", "context": "CREATE TABLE t (a INTEGER)", "answer": "[SQL] SELECT a FROM t [/SQL]"}
    scores = score_records([{**prose, "prediction": "The table t has a column a."},
                            {**prose, "prediction": "CREATE TABLE t (a INTEGER)"},
                            {**prose, "prediction": "Here it is:\n```sql\nSELECT a FROM t\n```"}])
    assert scores["no_query"] == 2 and scores["execution_accuracy"] == 1 / 3
