"""An instruct model's prompts through its own chat template (runner/chat_prompt.py, `dataset.prompt`), and
answers that real models write without the [SQL] tags (runner/evals/sql_text.py). The real SmolLM2
tokenizer's own rendering (text and token ids): tests/test_real_model.py."""

import json
import shutil
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.evals.prompts import PromptTemplate
from runner.evals.sql_text import extract_sql

SMALL_LLAMA = Path(__file__).parent / "data" / "small-llama"   # SmolLM2-135M's config.json and chat template
USER = "Using the schema context below, generate a SQL query that answers the question.\n{input}\n{instruction}"
RECORD = {"question": "How many heads?", "context": "CREATE TABLE head (age INTEGER)", "answer": "[SQL] SELECT COUNT(*) FROM head [/SQL]"}


def formats(job):
    return [entry["type"] for key in ("datasets", "test_datasets") for entry in job.config[key]]


def test_an_instruct_model_is_prompted_through_its_chat_template(plan):
    job = plan(f"base_model={SMALL_LLAMA}")
    expected = "<|im_start|>user\n" + USER + "<|im_end|>\n<|im_start|>assistant\n"
    assert [f["format"] for f in formats(job)] == [expected, expected]   # training and held-out alike
    assert [f["no_input_format"] for f in formats(job)] == ["<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"] * 2
    assert job.config["dataset"]["chat_prompt"]["format"] == expected
    assert any(note.startswith("prompt: the model's own chat template (dataset.prompt=auto") for note in job.model_notes)
    # what the eval prompts with is what training saw, and a run's own resolution keeps it
    assert PromptTemplate.from_config(job.config).prompt(RECORD) == expected.format(input=RECORD["context"], instruction=RECORD["question"])
    run = job.for_run("20261207-000000-x")
    assert [f["format"] for f in formats(run)] == [expected, expected]
    assert run.config["model_spec"] == job.config["model_spec"] and run.config["model_spec"]["params_b"]   # model=auto's figures


def test_tags_keep_the_group_s_format_and_a_model_without_a_template_keeps_it_too(plan, tmp_path):
    tagged = plan(f"base_model={SMALL_LLAMA}", "dataset.prompt=tags")
    assert formats(tagged)[0]["format"].startswith("[INST] ") and not tagged.config["dataset"].get("chat_prompt")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(SMALL_LLAMA / "config.json", bare)
    tokenizer = json.loads((SMALL_LLAMA / "tokenizer_config.json").read_text())
    del tokenizer["chat_template"]
    (bare / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    assert formats(plan(f"base_model={bare}"))[0]["format"].startswith("[INST] ")   # auto: no template, tags
    with pytest.raises(UserError, match=r"^dataset.prompt=chat needs the model's chat template, and the tokenizer of .*bare has none"):
        plan(f"base_model={bare}", "dataset.prompt=chat")


def test_chat_needs_a_tokenizer_on_this_machine_and_other_choices_are_refused(plan):
    with pytest.raises(UserError, match=r"^dataset.prompt=chat needs the model's chat template, and base_model=\S+ "
                                        r"\(not a local folder\) has none here: set tokenizer_config="):
        plan("model=llama2", "gpu=a100", "dataset.prompt=chat")
    assert formats(plan("model=llama2", "gpu=a100"))[0]["format"].startswith("[INST] ")   # a hub model: auto keeps the tags
    with pytest.raises(UserError, match="dataset.prompt"):
        plan("dataset.prompt=chatml")


def test_a_template_s_own_bos_is_left_to_the_tokenizer_that_adds_one(plan, tmp_path):
    folder = tmp_path / "llama-like"
    folder.mkdir()
    shutil.copy(SMALL_LLAMA / "config.json", folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
        "chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}))
    assert formats(plan(f"base_model={folder}"))[0]["format"] == "[INST] " + USER + " [/INST]"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["add_bos_token"] = False   # a tokenizer that adds none: the template's BOS stays in the text
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert formats(plan(f"base_model={folder}"))[0]["format"] == "<s>[INST] " + USER + " [/INST]"


@pytest.mark.parametrize("answer, query", [
    # SmolLM2-135M-Instruct's own answers through its chat template (CPU, greedy)
    ("CREATE TABLE shop (\n  Shops_Name VARCHAR\n)\n\nSELECT * FROM shop\nWHERE LOCATION LIKE '%shop%';", "SELECT * FROM shop\nWHERE LOCATION LIKE '%shop%';"),
    ("To list them, use:\n\n```sql\nCREATE TABLE t (a INT);\nSELECT a FROM t\n```\nThis query ...", "SELECT a FROM t"),
    ("SELECT a FROM t WHERE b IN (SELECT b FROM u)", "SELECT a FROM t WHERE b IN (SELECT b FROM u)"),
    ("[SQL] SELECT 1 [/SQL]", "SELECT 1"),
])
def test_the_query_is_found_past_an_echoed_schema(answer, query):
    assert extract_sql(answer) == query
