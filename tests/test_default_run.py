"""The embedded default, end to end with real axolotl on the tiny model: prepare → preprocess → train →
eval (merge left for later: `runs merge`), and the run folder it leaves."""

import pytest
import hashlib
import json
import re

import yaml

from runner.paths import data_file
from runner.settings import RUNNER_KEYS, STAGES

pytestmark = pytest.mark.slow   # minutes: a real pipeline or every combination; CI runs it


def test_default_run_succeeds_and_prints_a_summary(default_run):
    result, run_dir = default_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_dir is not None
    assert f"run {run_dir.name}  succeeded" in result.stdout
    assert re.search(r"train loss\s+[\d.]+ → [\d.]+", result.stdout)
    assert f"merge       python -m runner.runs --runs-root {run_dir.parent} merge {run_dir.name}" in result.stdout


def test_loss_went_down_and_the_adapter_exists(default_run):
    _, run_dir = default_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_loss"]["last"] < 0.5 * metrics["train_loss"]["first"]
    assert metrics["eval_loss"]["last"] < metrics["eval_loss"]["first"]
    history = json.loads((run_dir / "logs" / "train_history.json").read_text())
    assert min(r["epoch"] for r in history if "eval_loss" in r) > 0   # no evaluation before step 1: the eval stage's base
    assert (run_dir / "outputs" / "adapter_model.safetensors").stat().st_size > 0
    assert (run_dir / "outputs" / "adapter_config.json").is_file()


def test_run_folder_holds_config_provenance_status_and_logs(default_run):
    _, run_dir = default_run
    assert re.fullmatch(r"\d{8}-\d{6}-tiny-lora-[0-9a-f]{4}", run_dir.name)
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    composed = yaml.safe_load((run_dir / "composed.yaml").read_text())
    assert not set(config) & set(RUNNER_KEYS)
    assert config == {k: v for k, v in composed.items() if k not in RUNNER_KEYS}
    assert config["output_dir"] == str(run_dir / "outputs")

    job = json.loads((run_dir / "job.json").read_text())
    assert job["run_id"] == run_dir.name and job["choices"]["model"] == "tiny"
    assert job["compute"]["processes"] == 1 and job["compute"]["gpu_string"] is None

    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert len(provenance["git"]["commit"]) == 40 and provenance["git"]["dirty"] in (True, False)
    shipped = hashlib.sha256(open(data_file("sqlqa-train.jsonl"), "rb").read()).hexdigest()
    assert provenance["data"]["train"]["sha256"] == shipped
    assert provenance["packages"]["axolotl"] == "0.19.0"
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["config_sha256"])

    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded"
    for stage in STAGES:
        entry = status["stages"][stage]
        if stage == "merge":   # by default: eval, infer and serve use base + adapter
            assert (entry["state"], entry["reason"]) == ("skipped", "turned off (stages.merge=false)"), entry
            continue
        if stage == "preprocess":   # one process trains: it tokenises too, and the run records where
            assert (entry["state"], entry["folded"]) == ("skipped", "train"), entry
            continue
        assert entry["state"] == "succeeded", (stage, entry)
        assert entry["started"] <= entry["ended"]
        assert (run_dir / entry["log"]).stat().st_size > 0
    assert not list(run_dir.rglob("*.tmp"))


def test_tuned_model_beats_base_by_30_points_of_execution_accuracy(default_run):
    result, run_dir = default_run
    evaluation = json.loads((run_dir / "metrics.json").read_text())["eval"]
    assert (evaluation["split"], evaluation["n"], evaluation["engine"]) == ("test", 200, "transformers")
    base, tuned = evaluation["base"], evaluation["tuned"]
    assert tuned["execution_accuracy"] - base["execution_accuracy"] >= 0.30, (base, tuned)
    assert tuned["eval_loss"] < base["eval_loss"]
    assert (run_dir / "eval" / "predictions-tuned.jsonl").is_file()
    # the gain with its 95 % interval, which on the default run is well clear of 0
    gain = evaluation["gains"]["execution_accuracy"]
    assert gain["interval_95"][0] > 0.2 and gain["records"] == 200 - base["gold_errors"]
    assert re.search(r"exec acc\s+0\.\d+ → 0\.\d+  \(base → tuned; \+0\.\d+, 95 % CI \+0\.\d+…\+0\.\d+\)", result.stdout)


def test_runs_merge_writes_the_merged_model_later_and_it_answers_like_base_plus_adapter(default_run, tmp_path):
    """Last in this file: it adds outputs/merged to the session's default run."""
    from conftest import run_cli

    result, run_dir = default_run
    merged = run_dir / "outputs" / "merged"
    assert not merged.exists()
    root = ["--runs-root", str(run_dir.parent)]
    done = run_cli(*root, "merge", run_dir.name, module="runner.runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(merged)
    assert (merged / "model.safetensors").stat().st_size > 0 and (merged / "config.json").is_file()
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["stages"]["merge"]["state"]) == ("succeeded", "succeeded")
    again = run_cli(*root, "merge", run_dir.name, module="runner.runs", cwd=tmp_path)
    assert again.returncode == 0 and "already merged" in again.stderr

    # infer now loads the merged weights: the same answers as base + adapter gave in the eval stage
    tuned = [json.loads(line) for line in (run_dir / "eval" / "predictions-tuned.jsonl").read_text().splitlines()]
    record, tokens = tuned[0], json.loads((run_dir / "metrics.json").read_text())["eval"]["max_new_tokens"]
    answer = run_cli(f"run={run_dir.name}", f"runs_root={run_dir.parent}", f"prompt={record['question']}",
                     f"context={record['context']}", f"max_new_tokens={tokens}", module="runner.infer", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip() == record["prediction"].strip()


def test_runs_merge_refuses_what_it_cannot_merge(tmp_path):
    from conftest import run_cli

    missing = run_cli("--runs-root", str(tmp_path), "merge", "nope", module="runner.runs", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and len(missing.stderr.splitlines()) == 1
    usage = run_cli("merge", module="runner.runs", cwd=tmp_path)
    assert usage.returncode == 2 and "usage: python -m runner.runs merge RUN [RUN ...]" in usage.stderr
