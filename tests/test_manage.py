"""Managing what was launched: a job done before is cached, the base model's eval is scored once, a killed
or interrupted run resumes in its folder, runs are compared and rerun from their records."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from test_eval_stage import QUICK, build_tiny, make_run

STAGES_OFF = [f"stages.{s}=false" for s in ("prepare", "preprocess", "train", "merge", "eval")]


def runner(*args, cwd, module="runner", timeout=600, **kwargs):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def runs_in(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "job.json").is_file())


def test_the_tokenised_data_key_follows_the_data_settings_and_nothing_else(plan):
    """Jobs that differ in training settings share tokens; a setting that changes the tokens (row length, the
    prompt format, the data file) does not."""
    from runner.cache import prepared_key

    def key(*overrides, data="abc"):
        return prepared_key(plan(*overrides).axolotl_config, {"train": data})

    base = key()
    for training in ("learning_rate=3e-4", "lora_r=32", "num_epochs=2", "micro_batch_size=2", "optimizer=adamw_torch"):
        assert key(training) == base, training
    for tokens in ("sequence_len=512", "train_on_inputs=true", "sample_packing=true"):
        assert key(tokens) != base, tokens
    assert key(data="def") != base


def test_this_machine_and_modal_agree_on_which_jobs_share_tokens(plan, tmp_path):
    """Issue 24, goal 4: one key. The run folder's own key (this machine, and each Modal stage container),
    the Modal sweep's groups (the leader tokenises for the others) and its worst-case bound group the same
    jobs together, for configs that differ in data-relevant and data-irrelevant keys."""
    from runner import prepared
    from runner.backends import modal_bounds
    from runner.backends.modal_launcher import job_request
    from runner.paths import DATA_DIR
    from runner.runfolder import RunFolder

    fewer = tmp_path / "fewer.jsonl"   # other records: other tokens
    fewer.write_text("".join((DATA_DIR / "sqlqa-train.jsonl").read_text().splitlines(keepends=True)[:-1]))
    variants = {"base": [], "lora_r": ["lora_r=32"], "learning_rate": ["learning_rate=3e-4"],
                "epochs": ["num_epochs=2"], "micro_batch": ["micro_batch_size=2"], "run_name": ["run_name=x"],
                "sequence_len": ["sequence_len=512"], "train_on_inputs": ["train_on_inputs=true"],
                "packing": ["sample_packing=false"], "data": [f"dataset.path={fewer}"], "model": ["model=pythia"],
                # a training key the list of keys that leave tokens alone does not name: it costs a
                # tokenisation on both alike (Modal's own allow-list of data keys once grouped it apart)
                "min_lr": ["cosine_min_lr_ratio=0.1"]}
    local, modal, bound = {}, {}, {}
    for name, overrides in variants.items():
        common = [f"runs_root={tmp_path / 'runs'}", "gpu=a100"]
        here = plan(*common, "backend=local", *overrides)
        local[name] = prepared.data_key(RunFolder.create(here.for_run(f"run-{name}")))[1]
        there = plan(*common, "backend=modal", *overrides)
        modal[name] = job_request(there, 1, f"run-{name}", tmp_path / "volume", tmp_path / "pretrained")["preprocess_key"]
        bound[name] = modal_bounds.data_key(there.config)

    def groups(keys):
        return sorted(sorted(n for n in keys if keys[n] == key) for key in set(keys.values()))

    expected = [["base", "epochs", "learning_rate", "lora_r", "micro_batch", "run_name"], ["data"], ["min_lr"],
                ["model"], ["packing"], ["sequence_len"], ["train_on_inputs"]]
    assert groups(local) == groups(modal) == groups(bound) == expected


def test_a_sweep_run_twice_is_all_cached_the_second_time(tmp_path):
    args = ["-m", "lora_r=4,8", "learning_rate=1e-3,2e-3", *STAGES_OFF, f"runs_root={tmp_path / 'runs'}"]
    first = runner(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(runs_in(tmp_path / "runs")) == 4
    second = runner(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("cached: run ") == 4 and len(runs_in(tmp_path / "runs")) == 4
    table = second.stdout[second.stdout.index("job  overrides"):]
    assert table.count(" cached ") == 4
    # one more value: only the new jobs run; rerun=true runs everything again
    third = runner("-m", "lora_r=4,8,16", "learning_rate=1e-3,2e-3", *STAGES_OFF, f"runs_root={tmp_path / 'runs'}",
                   cwd=tmp_path)
    assert third.stderr.count("cached: run ") == 4 and len(runs_in(tmp_path / "runs")) == 6
    again = runner(*args, "rerun=true", cwd=tmp_path)
    assert "cached" not in again.stderr and len(runs_in(tmp_path / "runs")) == 10


def test_changed_data_or_settings_are_not_cached(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text((ROOT / "runner" / "data" / "sqlqa-train.jsonl").read_text())
    args = [*STAGES_OFF, f"dataset.path={data}", f"runs_root={tmp_path / 'runs'}"]
    assert runner(*args, cwd=tmp_path).returncode == 0
    assert "cached" in runner(*args, cwd=tmp_path).stderr
    assert "cached" not in runner(*args, "eval.max_new_tokens=32", cwd=tmp_path).stderr   # an eval setting
    data.write_text(data.read_text().replace("SELECT", "SELECT ", 1))                       # one byte of data
    assert "cached" not in runner(*args, cwd=tmp_path).stderr


def test_the_base_model_is_scored_once_per_held_out_set(plan, tmp_path):
    from runner.stages import evaluate

    tiny = build_tiny(tmp_path / "tiny-llama")
    first = make_run(plan, tmp_path, tiny, eval_settings=QUICK, run_id="run-1")
    second = make_run(plan, tmp_path, tiny, eval_settings=QUICK, run_id="run-2")
    assert evaluate.main(str(first.path)) == 0 and evaluate.main(str(second.path)) == 0
    base_1, base_2 = first.metrics()["eval"]["base"], second.metrics()["eval"]["base"]
    assert base_2.pop("cached_from") == "run-1" and "cached_from" not in base_1 and base_2 == base_1
    assert ((second.path / "eval" / "predictions-base.jsonl").read_text()
            == (first.path / "eval" / "predictions-base.jsonl").read_text())
    # other held-out records: scored afresh
    third = make_run(plan, tmp_path, tiny, eval_settings={**QUICK, "limit": 5}, run_id="run-3")
    assert evaluate.main(str(third.path)) == 0 and "cached_from" not in third.metrics()["eval"]["base"]


def test_compare_shows_what_differs_and_the_results(tmp_path):
    root = tmp_path / "runs"
    for rank in (4, 8):
        assert runner(f"lora_r={rank}", "learning_rate=1e-3", *STAGES_OFF, f"runs_root={root}", cwd=tmp_path).returncode == 0
    a, b = runs_in(root)
    result = runner("--runs-root", str(root), "compare", a.name, b.name, module="runner.runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings, results = result.stdout.split("results:")
    assert settings.startswith("1 setting(s) differ:") and "lora_r" in settings and "output_dir" not in settings
    for label in ("train loss", "eval loss", "exec acc", "exact match", "GPU-hours", "cost $"):
        assert label in results
    alone = runner("--runs-root", str(root), "compare", a.name, module="runner.runs", cwd=tmp_path)
    assert alone.returncode == 2 and alone.stderr.startswith("error: usage: python -m runner.runs compare")


def test_rerun_reproduces_a_run_from_its_records(tmp_path):
    root, data = tmp_path / "runs", tmp_path / "train.jsonl"
    data.write_text((ROOT / "runner" / "data" / "sqlqa-train.jsonl").read_text())
    assert runner("lora_r=12", f"dataset.path={data}", *STAGES_OFF, f"runs_root={root}", cwd=tmp_path).returncode == 0
    (old,) = runs_in(root)
    data.write_text(data.read_text().replace("SELECT", "SELECT ", 1))
    result = runner("--runs-root", str(root), "rerun", old.name, module="runner.runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: data: {data} is not the file run {old.name} trained on" in result.stderr
    new = next(p for p in runs_in(root) if p != old)
    config_old, config_new = ((p / "config.yml").read_text().replace(p.name, "<run>") for p in (old, new))
    assert config_new == config_old
    assert json.loads((new / "job.json").read_text())["launch"]["rerun_of"] == old.name


@pytest.mark.slow
def test_a_run_killed_during_train_resumes_from_its_checkpoint(tmp_path):
    """kill -9 of the whole process group mid-train; `runs resume` continues in the same folder."""
    root = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "runner", "num_epochs=1", "max_steps=24", "save_steps=8",
                                "eval.limit=4", "stages.merge=false", f"runs_root={root}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600   # the trainer writes trainer_state.json last: then checkpoint-8 is whole
    while not list(root.glob("*/outputs/checkpoint-8/trainer_state.json")) and time.monotonic() < deadline \
            and process.poll() is None:
        time.sleep(0.2)
    assert list(root.glob("*/outputs/checkpoint-8/trainer_state.json")), "no checkpoint before the deadline"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (run,) = runs_in(root)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "running" and status["stages"]["train"]["state"] == "running"   # as a kill leaves it
    result = runner("--runs-root", str(root), "resume", run.name, module="runner.runs", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "at stage train, train from checkpoint-" in result.stderr
    log = (run / "logs" / "train.log").read_text()
    assert "resume from checkpoint at" in log and "checkpoint-8" in log
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "succeeded" and status["stages"]["eval"]["state"] == "succeeded"
    assert runs_in(root) == [run]   # the same folder, no new one


@pytest.mark.slow
def test_ctrl_c_leaves_the_run_interrupted(tmp_path):
    root = tmp_path / "runs"
    # SIGINT as a terminal leaves it, even where the suite was started in the background (a shell without job
    # control starts background commands with SIGINT ignored, and Python then never turns it into Ctrl-C)
    process = subprocess.Popen([sys.executable, "-m", "runner", "num_epochs=1", "max_steps=200", f"runs_root={root}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        status = [json.loads(p.read_text()) for p in root.glob("*/status.json")]
        if status and status[0]["stages"]["train"]["state"] == "running":
            break
        time.sleep(0.2)
    time.sleep(3)
    os.killpg(process.pid, signal.SIGINT)   # what Ctrl-C in a terminal sends to the foreground group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.strip().endswith("interrupted")
    (run,) = runs_in(root)
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["interrupted_stage"], status["stages"]["train"]["state"]) == (
        "interrupted", "train", "interrupted")


def test_a_checkpoint_cut_off_by_a_kill_is_set_aside_before_resuming(tmp_path):
    from runner.runfolder import RunFolder

    (tmp_path / "outputs").mkdir()
    whole, cut = tmp_path / "outputs" / "checkpoint-4", tmp_path / "outputs" / "checkpoint-8"
    whole.mkdir()
    (whole / "trainer_state.json").write_text("{}")
    (whole / "adapter_model.safetensors").write_bytes(b"x")
    cut.mkdir()
    (cut / "tokens_state.json").write_text("{}")   # what axolotl writes before the trainer saves
    half = tmp_path / "outputs" / "checkpoint-12"   # killed while writing its trainer state
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"x")
    (half / "trainer_state.json").write_text('{"global_step": 1')
    assert RunFolder(tmp_path).set_aside_incomplete_checkpoints() == ["checkpoint-12", "checkpoint-8"]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [
        "checkpoint-4", "incomplete-checkpoint-12", "incomplete-checkpoint-8"]


def test_compare_shows_each_gain_with_its_interval():
    from runner.runs.compare import RESULTS

    metrics = {"eval": {"gains": {"execution_accuracy": {"gain": 0.3, "interval_95": [0.25, 0.35], "records": 200}}}}
    assert RESULTS["exec acc gain"](metrics, None) == "+0.300 [+0.250, +0.350]"
    assert RESULTS["eval loss gain"](metrics, None) is None   # no figure: a "-" cell
