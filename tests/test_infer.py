"""`python -m runner.infer`: answers from a run's model with its training template; one-line errors."""

import shutil
import sys
from pathlib import Path

import pytest

from runner import infer
from runner.evals import answer
from runner.evals.prompts import PromptTemplate
from runner.records import read_json, write_json

sys.path.insert(0, str(Path(__file__).parent))
from test_eval_stage import build_tiny, keep_environ, make_run  # noqa: E402

SCHEMA = "CREATE TABLE car (make TEXT, color TEXT, year INTEGER, price INTEGER)"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-llama")


def run_infer(capsys, *args):
    code = infer.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_answers_a_sqlqa_question_from_the_merged_model(plan, tmp_path, tiny_model, capsys, monkeypatch):
    keep_environ(monkeypatch)
    folder = make_run(plan, tmp_path, tiny_model)
    code, out, err = run_infer(capsys, f"run={folder.run_id}", f"runs_root={tmp_path}", "prompt=How many cars?",
                               f"context={SCHEMA}", "max_new_tokens=5")
    assert code == 0, err
    assert out.strip()   # a random model: some text, up to 5 tokens


def test_unknown_run_suggests_the_closest_id(plan, tmp_path, tiny_model, capsys):
    make_run(plan, tmp_path, tiny_model, run_id="20261127-194637-tiny-lora-6dab", tuned="none")
    code, _, err = run_infer(capsys, "run=20261127-194637-tiny-lora-6dax", f"runs_root={tmp_path}", "prompt=x")
    assert code == 2
    assert err.strip() == (f"error: no run '20261127-194637-tiny-lora-6dax' under {tmp_path} "
                           "(did you mean '20261127-194637-tiny-lora-6dab'?)")


def test_run_without_model_is_a_one_line_error(plan, tmp_path, tiny_model, capsys):
    make_run(plan, tmp_path, tiny_model, tuned="none")
    code, _, err = run_infer(capsys, "run=run-1", f"runs_root={tmp_path}", "prompt=x")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: run run-1 has no merged model") and "no adapter" in err


@pytest.mark.parametrize("args, message", [
    (["prompt=x"], "error: run=RUN_ID is required"),
    (["run=r"], 'error: prompt="..." is required (or interactive=true)'),
    (["run=r", "prompt=x", "temperature=1"], "error: unknown setting 'temperature'"),
    (["run=r", "prompt=x", "max_new_tokens=lots"], "error: max_new_tokens must be a whole number"),
    (["run=r", "prompt=x", "model=best"], "error: unknown model 'best'"),
    (["run=r", "prompt"], "error: expected key=value, got 'prompt'"),
])
def test_bad_arguments_are_one_line_errors(capsys, args, message):
    code, _, err = run_infer(capsys, *args)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


def test_cli_exit_code_and_no_traceback(cli, tmp_path):
    result = cli("run=nope", f"runs_root={tmp_path}", "prompt=x", module="runner.infer")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: no runs under {tmp_path} (set runs_root=DIR)"


def test_prompt_uses_the_runs_template_with_context(plan, tmp_path, tiny_model):
    config = make_run(plan, tmp_path, tiny_model, tuned="none").composed()
    template = PromptTemplate.from_config(config)
    text, special = answer.render(config, infer.Question("How many cars?", SCHEMA), raw=False)
    assert text == template.prompt({"question": "How many cars?", "context": SCHEMA}) and special
    assert text.endswith("How many cars? [/INST] ") and SCHEMA in text
    assert answer.render(config, infer.Question("SELECT"), raw=True) == ("SELECT", True)


def test_modal_runs_are_answered_remotely_with_plain_data(plan, tmp_path, tiny_model, capsys, monkeypatch):
    folder = make_run(plan, tmp_path, tiny_model, tuned="none")   # weights stay on the runs Volume
    job = read_json(folder.path / "job.json")
    job["compute"]["backend"] = "modal"
    write_json(folder.path / "job.json", job)
    calls = []

    def remote(run_id, questions, options):
        calls.append((run_id, questions, options))
        return ["[SQL] SELECT COUNT(*) FROM car [/SQL]"]

    monkeypatch.setattr(infer, "answer_remotely", remote)
    code, out, err = run_infer(capsys, "run=run-1", f"runs_root={tmp_path}", "prompt=How many cars?",
                               f"context={SCHEMA}")
    assert code == 0, err
    assert out.strip() == "[SQL] SELECT COUNT(*) FROM car [/SQL]"
    assert calls == [("run-1", [infer.Question("How many cars?", SCHEMA)], infer.InferOptions())]


def test_interactive_mode_keeps_the_context_between_questions(plan, tmp_path, tiny_model, capsys, monkeypatch):
    folder = make_run(plan, tmp_path, tiny_model, tuned="none")
    job = read_json(folder.path / "job.json")
    job["compute"]["backend"] = "modal"
    write_json(folder.path / "job.json", job)
    asked = []
    monkeypatch.setattr(infer, "answer_remotely", lambda run_id, qs, options: asked.extend(qs) or ["ok"])
    lines = iter([f":context {SCHEMA}", "How many cars?", "", "List makes", ":quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, _ = run_infer(capsys, "run=run-1", f"runs_root={tmp_path}", "interactive=true")
    assert code == 0 and out.split() == ["ok", "ok"]
    assert asked == [infer.Question("How many cars?", SCHEMA), infer.Question("List makes", SCHEMA)]


def test_run_id_prefix_is_enough(plan, tmp_path, tiny_model, capsys):
    folder = make_run(plan, tmp_path, tiny_model, run_id="20261127-194637-tiny-lora-6dab")
    shutil.rmtree(folder.merged)
    code, _, err = run_infer(capsys, "run=20261127-1946", f"runs_root={tmp_path}", "prompt=x")
    assert code == 2 and "run 20261127-194637-tiny-lora-6dab has no merged model" in err
