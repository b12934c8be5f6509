"""Eval prompts are the training prompts: the same text and token ids as axolotl's user_defined strategy."""

import pytest

from runner.evals.prompts import IGNORE_INDEX, PromptTemplate, read_jsonl, tokenize_example

import axolotl.prompt_strategies.user_defined as axolotl_user_defined  # the local extra: no silent skip
from axolotl.utils.dict import DictDefault  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from runner.models.tiny import build_tokenizer

    return build_tokenizer(2048)


@pytest.fixture(scope="module")
def sqlqa(plan_module):
    job = plan_module()
    return job.config, read_jsonl(job.config["dataset"]["test_path"], limit=20)


@pytest.fixture(scope="module")
def plan_module():
    from runner.compose import expand_overrides
    from runner.plan import plan_job

    return lambda *overrides: plan_job(expand_overrides(list(overrides), multirun=False)[0])


def axolotl_strategy(tokenizer, type_: dict, sequence_len: int = 256, train_on_inputs: bool = False):
    cfg = DictDefault({"train_on_inputs": train_on_inputs, "sequence_len": sequence_len})
    return axolotl_user_defined.load(tokenizer, cfg, axolotl_user_defined.UserDefinedDatasetConfig(**type_))


def test_sqlqa_prompt_text_is_axolotls_rendering(sqlqa, tokenizer):
    config, records = sqlqa
    type_ = config["datasets"][0]["type"]
    template = PromptTemplate.from_config(config)
    prompter = axolotl_strategy(tokenizer, type_).prompter
    for record in records:
        expected = next(prompter.build_prompt_w_system("", record["question"], record["context"]))
        assert template.prompt(record) == expected
    assert template.prompt(records[0]).startswith("[INST] Using the schema context below")
    assert template.prompt({"question": "Hi?", "context": ""}) == "[INST] Hi? [/INST] "   # no_input_format


@pytest.mark.parametrize("train_on_inputs", [False, True])
def test_token_ids_and_labels_are_axolotls(sqlqa, tokenizer, train_on_inputs):
    config, records = sqlqa
    type_ = config["datasets"][0]["type"]
    strategy = axolotl_strategy(tokenizer, type_, train_on_inputs=train_on_inputs)
    template = PromptTemplate.from_type(type_)
    for record in records:
        expected = strategy.tokenize_prompt(dict(record))
        assert tokenize_example(tokenizer, template, record, 256, train_on_inputs) == (
            expected["input_ids"], expected["labels"])


def test_generation_prompt_is_the_trained_prefix_with_bos(sqlqa, tokenizer):
    config, records = sqlqa
    template = PromptTemplate.from_config(config)
    for record in records:
        ids, labels = tokenize_example(tokenizer, template, record, 256)
        prompt_ids = tokenizer(template.prompt(record))["input_ids"]
        assert prompt_ids[0] == tokenizer.bos_token_id
        assert ids[: len(prompt_ids)] == prompt_ids and set(labels[: len(prompt_ids)]) == {IGNORE_INDEX}
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[len(prompt_ids):], skip_special_tokens=True) == record["answer"]


def test_system_prompt_and_custom_fields(tokenizer):
    type_ = {"system_prompt": "You write SQL.", "system_format": "<<{system}>>\n", "field_instruction": "q",
             "field_input": "ctx", "field_output": "a", "format": "Q: {instruction}\nC: {input}\nA: ",
             "no_input_format": "Q: {instruction}\nA: "}
    template = PromptTemplate.from_type(type_)
    strategy = axolotl_strategy(tokenizer, type_)
    for record in ({"q": "count rows", "ctx": "CREATE TABLE t (a INT)", "a": "SELECT 1"},
                   {"q": "count rows", "a": "SELECT 1", "system": "Per-record system."}):
        system = record.get("system", "You write SQL.")
        expected = next(strategy.prompter.build_prompt_w_system(system, record["q"], record.get("ctx", "")))
        assert template.prompt(record) == expected
        got = tokenize_example(tokenizer, template, record, 256)
        assert got == (strategy.tokenize_prompt(dict(record))["input_ids"], strategy.tokenize_prompt(dict(record))["labels"])
