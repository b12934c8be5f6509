"""The eval stage on a real (tiny, random) model: base and tuned figures, predictions, summary lines.

Also home of `build_tiny` and `make_run`, which test_infer.py and test_serve.py import: a run folder
created from a composed config, with the tiny model as its "tuned" weights.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.errors import UserError
from runner.evals.settings import EvalSettings
from runner.runfolder import RunFolder
from runner.stages import evaluate

ROOT = Path(__file__).resolve().parents[1]
TINY_SPEC = yaml.safe_load((ROOT / "conf" / "model" / "tiny.yaml").read_text())["model_spec"]
QUICK = {"limit": 6, "max_new_tokens": 8, "batch_size": 4}


def build_tiny(target: Path) -> Path:
    from runner.models import tiny

    return tiny.build(target, TINY_SPEC)


def make_run(plan, root: Path, base_model: Path, *overrides: str, eval_settings: dict | None = None,
             tuned: str = "merged", run_id: str = "run-1") -> RunFolder:
    """A run folder as the pipeline creates it; tuned: "merged" (a copy of the base), "adapter" or "none"."""
    job = plan("model=tiny", f"runs_root={root}", f"base_model={base_model}", *overrides).for_run(run_id)
    job.config["eval"] = dict(eval_settings or {})
    folder = RunFolder.create(job)
    if tuned == "merged":
        shutil.copytree(base_model, folder.merged)
    elif tuned in ("adapter", "trained adapter"):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base_model)
        # fresh LoRA weights are a no-op (B = 0): tuned must score exactly like base; "trained" ones are not
        torch.manual_seed(0)   # the same adapter each time
        peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
        if tuned == "trained adapter":
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.data.normal_(0, 0.5)
        peft_model.save_pretrained(folder.outputs)
    return folder


def keep_environ(monkeypatch) -> None:
    """runner.evals.answer.Answerer sets the stage environment (model cache, offline) in its process: undo it after."""
    from runner.stages import stage_env

    for key in stage_env({"cache_dir": "unused"}, offline=True):
        monkeypatch.delenv(key, raising=False)


def counted_loads(monkeypatch) -> list[str]:
    """The paths AutoModelForCausalLM.from_pretrained loads from here on, in order (it still loads them)."""
    from transformers import AutoModelForCausalLM

    loads: list[str] = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counted))
    return loads


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-llama")


def test_sqlqa_run_gets_base_and_tuned_figures_predictions_and_summary(plan, tmp_path, tiny_model):
    folder = make_run(plan, tmp_path, tiny_model, eval_settings=QUICK)
    assert evaluate.main(str(folder.path)) == 0
    metrics = folder.metrics()
    record = metrics["eval"]
    assert (record["split"], record["n"], record["engine"]) == ("test", 6, "transformers")
    for variant in ("base", "tuned"):
        figures = record[variant]
        assert 0 <= figures["exact_match"] <= 1 and 0 <= figures["execution_accuracy"] <= 1
        assert figures["eval_loss"] > 0 and figures["perplexity"] > 1 and figures["loss_n"] == 6
        assert 6 <= figures["generated_tokens"] <= 6 * QUICK["max_new_tokens"] and figures["generate_tok_s"] > 0
    # the same weights under both names: the same figures, so prompts and decoding are the same too
    same = ("exact_match", "execution_accuracy", "eval_loss", "invalid_predictions", "no_query")
    assert {k: record["base"][k] for k in same} == {k: record["tuned"][k] for k in same}
    labels = [label for label, _ in metrics["summary_lines"]]
    assert labels == ["exec acc", "exact match", "perplexity", "no query", "eval split"]
    no_query = record["tuned"]["no_query"]   # answers no query could be read from, base → tuned
    assert dict(metrics["summary_lines"])["no query"] == f"{no_query} → {no_query} of 6 answers  (base → tuned)"
    assert "(base → tuned; " in dict(metrics["summary_lines"])["exec acc"]   # with the gain's interval
    gains = metrics["eval"]["gains"]
    assert set(gains) == {"execution_accuracy", "exact_match", "eval_loss", "perplexity"}
    assert all(g["records"] >= 1 and g["interval_95"][0] <= g["interval_95"][1] for g in gains.values())
    scored = [json.loads(line) for line in (folder.path / "eval" / "predictions-tuned.jsonl").read_text().splitlines()]
    assert all({"exact", "execution"} <= set(r) for r in scored)   # each answer's own result, for the interval

    base_file = folder.path / "eval" / "predictions-base.jsonl"
    lines = [json.loads(line) for line in base_file.read_text().splitlines()]
    assert len(lines) == 6 and all({"question", "context", "answer", "prediction"} <= set(r) for r in lines)
    rescored = subprocess.run([sys.executable, "-m", "runner.evals.sql", str(base_file)], capture_output=True,
                              text=True, cwd=ROOT, check=True)
    assert json.loads(rescored.stdout)["execution_accuracy"] == record["base"]["execution_accuracy"]


def test_tuned_adapter_without_merge_is_evaluated_as_base_plus_adapter(plan, tmp_path, tiny_model):
    """A trained adapter (B ≠ 0) scores as the same adapter merged into the base by peft, not as the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    settings = {**QUICK, "limit": 3}
    folder = make_run(plan, tmp_path / "adapter", tiny_model, eval_settings=settings, tuned="trained adapter")
    merged = make_run(plan, tmp_path / "merged", tiny_model, eval_settings=settings, tuned="none")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    PeftModel.from_pretrained(base, str(folder.outputs)).merge_and_unload().save_pretrained(merged.merged)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, merged.merged / name)
    record = evaluate.evaluate_run(folder.path, folder.composed())
    expected = evaluate.evaluate_run(merged.path, merged.composed())
    assert abs(record["tuned"]["eval_loss"] - record["base"]["eval_loss"]) > 1e-3   # the adapter counts
    assert record["tuned"]["eval_loss"] == pytest.approx(expected["tuned"]["eval_loss"], rel=1e-4)
    assert record["tuned"]["exact_match"] == expected["tuned"]["exact_match"]


def test_base_then_base_plus_adapter_load_the_weights_once(plan, tmp_path, tiny_model, monkeypatch):
    """The tuned model is the base in memory with the adapter merged in: the same figures as loading it anew."""
    folder = make_run(plan, tmp_path, tiny_model, eval_settings=QUICK, tuned="trained adapter")
    alone = make_run(plan, tmp_path / "alone", tiny_model, eval_settings={**QUICK, "base": False},
                     tuned="trained adapter")
    loads = counted_loads(monkeypatch)
    both = evaluate.evaluate_run(folder.path, folder.composed())
    assert loads == [str(tiny_model)]
    assert both["tuned"]["eval_loss"] != pytest.approx(both["base"]["eval_loss"], rel=1e-3)   # the adapter counts

    tuned = evaluate.evaluate_run(alone.path, alone.composed())["tuned"]
    assert len(loads) == 2
    timing = ("generate_s", "generate_tok_s", "phase_s")
    assert {k: v for k, v in tuned.items() if k not in timing} == {
        k: v for k, v in both["tuned"].items() if k not in timing}


def test_base_can_be_skipped(plan, tmp_path, tiny_model):
    folder = make_run(plan, tmp_path, tiny_model, eval_settings={**QUICK, "limit": 2, "base": False})
    record = evaluate.evaluate_run(folder.path, folder.composed())
    assert "base" not in record and "tuned" in record
    assert all(value.endswith("(tuned)") for label, value in folder.metrics()["summary_lines"] if label != "eval split")


def test_other_formats_get_loss_and_perplexity_on_axolotls_eval_split(plan, tmp_path, tiny_model):
    """Not a template dict: the held-out examples are axolotl's own eval split, tokenised by axolotl (in this
    process, as the trainer would have) from the run's config.yml."""
    from runner.evals import loss

    data = ROOT / "tests" / "data" / "completion.jsonl"
    folder = make_run(plan, tmp_path, tiny_model, "dataset=completion", f"dataset.path={data}", "val_set_size=0.25",
                      eval_settings={"limit": 4})
    examples = loss.axolotl_eval_examples(folder.config_file, 4)
    records = len([line for line in data.read_text().splitlines() if line.strip()])
    assert 1 <= len(examples) <= min(4, records)
    for ids, labels in examples:
        assert len(ids) == len(labels) and any(label != -100 for label in labels)
        assert all(label in (-100, token) for token, label in zip(ids, labels))
    record = evaluate.evaluate_run(folder.path, folder.composed())
    assert record["split"] == "val" and record["n"] == len(examples) and record["engine"] is None
    assert "exact_match" not in record["tuned"] and record["tuned"]["perplexity"] > 1
    assert record["tuned"]["eval_loss"] == record["base"]["eval_loss"]   # the tuned weights are a copy of the base
    assert record["tuned"]["loss_n"] == len(examples)
    # no answers to write: only each model's per-record losses (the base → tuned interval)
    assert sorted(p.name for p in (folder.path / "eval").iterdir()) == ["losses-base.json", "losses-tuned.json"]
    assert set(record["gains"]) == {"eval_loss", "perplexity"}
    assert [label for label, _ in folder.metrics()["summary_lines"]] == ["perplexity", "eval split"]


def test_missing_tuned_model_is_a_one_line_error(plan, tmp_path, tiny_model, capsys):
    folder = make_run(plan, tmp_path, tiny_model, eval_settings=QUICK, tuned="none")
    assert evaluate.main(str(folder.path)) == 2
    assert capsys.readouterr().err.startswith("error: run run-1 has no merged model")


def test_eval_settings_are_the_schema_s_node_with_its_defaults(plan):
    from runner.schema.evals import EvalConfig

    settings = EvalSettings.from_config({})
    assert isinstance(settings, EvalConfig)   # one declaration: the schema's, which the plan checked
    assert (settings.engine, settings.max_new_tokens, settings.base) == ("auto", 64, True)
    assert settings.generation("sqlqa").stop == ("[/SQL]",) and settings.generation("alpaca").stop == ()
    assert EvalSettings.from_config({"eval": {"stop": ["###"]}}).generation("sqlqa").stop == ("###",)
    assert EvalSettings.from_config(plan("eval.limit=3").config) == EvalSettings(limit=3)
    # bad values never reach the stage: the plan refuses them (tests/test_schema.py has each message)
    for bad in ("eval.max_new_token=8", "eval.engine=tgi", "eval.limit=0"):
        with pytest.raises(UserError, match=r"eval\.(max_new_token|engine|limit)"):
            plan(bad)


def test_summary_lines_read_base_to_tuned():
    record = {"split": "test", "n": 200, "engine": "transformers",
              "base": {"execution_accuracy": 0.02, "exact_match": 0.0, "eval_loss": 7.5, "perplexity": 1808.0},
              "tuned": {"execution_accuracy": 0.61, "exact_match": 0.59, "eval_loss": 0.26, "perplexity": 1.3}}
    assert evaluate.summary_lines(record) == [
        ["exec acc", "0.020 → 0.610  (base → tuned)"],
        ["exact match", "0.000 → 0.590  (base → tuned)"],
        ["perplexity", "1808.00 → 1.30  (base → tuned)"],
        ["eval split", "test, 200 records, transformers greedy"],
    ]
    record["gains"] = {"execution_accuracy": {"gain": 0.59, "interval_95": [0.52, 0.66], "records": 200},
                       "exact_match": {"gain": 0.59, "interval_95": [-0.01, 0.66], "records": 200}}
    assert evaluate.summary_lines(record)[:2] == [
        ["exec acc", "0.020 → 0.610  (base → tuned; +0.590, 95 % CI +0.520…+0.660)"],
        ["exact match", "0.000 → 0.590  (base → tuned; +0.590, 95 % CI -0.010…+0.660: within noise)"],
    ]


def test_the_gains_interval_holds_zero_for_noise_and_not_for_a_real_gain():
    from runner.evals import bootstrap

    # 300 records, base right on 100; tuned wrong on 10 of those and right on 16 others: +0.02, within noise
    base = [i < 100 for i in range(300)]
    noise = bootstrap.accuracy_gain(base, [10 <= i < 116 for i in range(300)])
    assert noise["gain"] == 0.02 and noise["interval_95"][0] <= 0 <= noise["interval_95"][1]
    real = bootstrap.accuracy_gain(base, [i < 150 for i in range(300)])   # 50 more right: +0.167
    assert real["gain"] == pytest.approx(0.1667, abs=1e-4) and 0.1 < real["interval_95"][0] < real["gain"] < real["interval_95"][1]
    # records either side could not score (None) are left out of both
    assert bootstrap.accuracy_gain([True, None, False], [True, True, None])["records"] == 1
    # loss: per record (summed loss, answer tokens); every record 1.0 → 0.5 per token: −0.5 on any resample
    loss = bootstrap.loss_gain([[10.0, 10]] * 50, [[5.0, 10]] * 50)
    assert loss["eval_loss"] == {"gain": -0.5, "interval_95": [-0.5, -0.5], "records": 50}
    assert loss["perplexity"]["gain"] == pytest.approx(1.6487 - 2.7183, abs=1e-3)


def learning_gain(metrics: dict) -> float:
    """Execution-accuracy points the tuned model gains over the base (acceptance: ≥ 0.30 on the default run)."""
    record = metrics["eval"]
    return record["tuned"]["execution_accuracy"] - record["base"]["execution_accuracy"]


def test_no_held_out_data_is_reported_not_failed(plan, tmp_path, tiny_model, capsys):
    data = ROOT / "tests" / "data" / "completion.jsonl"
    folder = make_run(plan, tmp_path, tiny_model, "dataset=completion", f"dataset.path={data}", "val_set_size=0")
    assert evaluate.main(str(folder.path)) == 0
    assert folder.metrics()["eval"]["n"] == 0 and "nothing to evaluate" in capsys.readouterr().out


def test_the_loss_over_answer_positions_only_equals_the_loss_over_every_position(tiny_model, monkeypatch):
    """mean_token_loss pads on the left and runs the language-model head on the answers' positions only
    (logits_to_keep); a batch of different prompt and answer lengths scores as with right padding and logits
    everywhere, and so does the model's own loss on each example alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from runner.evals import loss
    from runner.evals.prompts import IGNORE_INDEX

    model = AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    examples = []
    for prompt, answer in ((5, 3), (17, 2), (9, 11), (2, 6), (30, 1)):
        ids = torch.randint(3, model.config.vocab_size, (prompt + answer,), generator=generator).tolist()
        examples.append((ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    assert loss._takes_logits_to_keep(model)
    tail = loss.mean_token_loss(model, examples, pad_id=0, batch_size=5)
    monkeypatch.setattr(loss, "_takes_logits_to_keep", lambda model: False)
    everywhere = loss.mean_token_loss(model, examples, pad_id=0, batch_size=5)
    assert tail["eval_tokens"] == everywhere["eval_tokens"] == 3 + 2 + 11 + 6 + 1
    assert tail["eval_loss"] == pytest.approx(everywhere["eval_loss"], rel=1e-4)
    with torch.no_grad():   # the model's own mean loss, one example at a time, weighted by its answer tokens
        own = sum(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item() * (len(ids) - labels.count(IGNORE_INDEX))
                  for ids, labels in examples) / tail["eval_tokens"]
    assert tail["eval_loss"] == pytest.approx(own, rel=1e-4)
