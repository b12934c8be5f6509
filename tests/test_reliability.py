"""A dry run starts nothing, a search is checked before it runs, signals stop a run as Ctrl-C does, and a
run whose process is gone shows as `died` (issue 28)."""

import json
import os
import platform
import re
import signal
import subprocess
import shutil
import sys
import time

import pytest

from conftest import ROOT, run_cli, wait_for_train_steps

SEARCH = ("-m", "hparams_search=sql_lora")


def nothing_created(folder):
    return not any(folder.iterdir())


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr


def test_a_dry_search_prints_the_search_and_its_first_trial_and_creates_nothing(tmp_path):
    result = run_cli(*SEARCH, "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# search: Optuna, 20 trials, 1 at a time, sampler TPESampler (seed 42)" in out
    assert "# objective: maximize eval.tuned.execution_accuracy" in out
    assert "#   learning_rate: log-uniform in [0.0001, 0.01]" in out and "#   lora_r: one of 4, 8, 16, 32" in out
    assert "# checked: 8 jobs" in out and "# job 1/1:" in out and "lora_r:" in out
    assert nothing_created(tmp_path)   # no study, no sweep folder, no run folder
    # the same search, one trial drawn the same way twice (the sampler's seed)
    again = run_cli(*SEARCH, "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    first = [line for line in out.splitlines() if line.startswith("# overrides:")]
    assert first and first == [line for line in again.stdout.splitlines() if line.startswith("# overrides:")]


SEARCH_CHECKS = [
    (["objective.direction=up"], "objective.direction=up is not a direction: use minimize or maximize"),
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials must be a whole number ≥ 1, got 0"),
    (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs must be a whole number ≥ 1, got 0"),
    (["hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate must be between 0 and 1, got 2"),
    (["objective.metric=eval.tuned.nope"], "objective.metric=eval.tuned.nope is not a figure this sweep's jobs will write"),
    (["objective.metric=eval.tuned.exec_acc"], "(did you mean 'eval.tuned.execution_accuracy'?)"),
    (["objective.metric=eval.tuned.execution_accuracy", "stages.eval=false"], "this job's stages write: train_loss"),
    (["hydra.sweeper.params.learning_rate='tag(log, interval(0, 1e-3))'"], "search space: `low > 0` must hold for `log=True`"),
    (["hydra.sweeper.params.learning_rate='interval(1e-3, 1e-4)'"], "search space: `low <= high` must hold"),
    (["hydra.sweeper.params.lora_r='choice(8, 0)'"], "lora_r=0 lora_alpha=8: lora_r must be a whole number of at least 1"),
    (["hydra.sweeper.params.learning_rate='interval(1e-4, 2)'"], "search trial learning_rate=2.0 lora_r=4 lora_alpha=8: learning_rate must be a number more than 0 and at most 1, or auto, got 2.0"),
    (["backend=modal", "hydra.sweeper.n_jobs=4"], "backend=modal needs a GPU"),
]


def test_a_search_is_checked_before_it_starts(tmp_path):
    """Each case, not a dry run: the checks come before the study, the sweep folder and the first trial."""
    from concurrent.futures import ThreadPoolExecutor

    def run(case):
        index, (overrides, message) = case
        where = tmp_path / str(index)
        where.mkdir()
        return where, message, run_cli(*SEARCH, *overrides, f"runs_root={where / 'runs'}", cwd=where)

    with ThreadPoolExecutor(2) as pool:
        for where, message, result in pool.map(run, enumerate(SEARCH_CHECKS)):
            assert result.returncode == 2, result.stderr + result.stdout
            assert one_error_line(result) and message in result.stderr, result.stderr
            assert nothing_created(where)


def test_a_grid_sweep_checks_its_objective(tmp_path):
    result = run_cli("-m", "lora_r=8,16", "objective.metric=eval.tuned.nope", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and one_error_line(result), result.stderr
    assert "objective.metric=eval.tuned.nope is not a figure" in result.stderr and nothing_created(tmp_path)


@pytest.mark.parametrize("overrides,message", [
    (["gpu=cpu", "eval.engine=vllm"], "eval.engine=vllm needs a CUDA GPU: gpu=cpu runs on this CPU"),
    (["model=llama2", "base_model=/no/such/model"], "base_model=/no/such/model: no such folder"),
    (["model=llama2", "base_model=./empty"], "has no config.json: not a Hugging Face model folder"),
    (["tracking=wandb", "tracking.project=x"], "tracking.project is not a setting: the tracking group sets top-level "
                                               "keys (mlflow_experiment_name"),
    (["tracking=mlflow", "+tracking.experimnt=x"], "did you mean mlflow_experiment_name=…?"),
    # the platform's own limits, before anything uploads (Modal: 24 h a call, 10 retries, its GPU names)
    (["backend=modal", "gpu=a100", "backend.timeout_h=99"], "backend.timeout_h must be more than 0 and at most 24"),
    (["backend=modal", "gpu=a100", "backend.eval_gpu=Z100"], "backend.eval_gpu: unknown Modal GPU 'Z100' (did you mean 'H100'?)"),
])
def test_settings_that_cannot_work_are_refused_by_the_dry_run(tmp_path, overrides, message):
    (tmp_path / "empty").mkdir()
    result = run_cli(*overrides, "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and one_error_line(result) and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_model_group_for_another_model_is_refused_by_the_dry_run(tmp_path):
    """The issue's new user: a local 135M Llama-architecture folder with model=llama2 got a memory error
    about 32 GiB; the group's figures are read against the folder's config.json first."""
    (tmp_path / "small").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "small-llama" / "tokenizer_config.json", tmp_path / "small")
    (tmp_path / "small" / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}))
    result = run_cli("model=llama2", "base_model=./small", "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and one_error_line(result), result.stderr
    assert ("small is not the model that model=llama2 describes: hidden_size 4096 (config.json: 576), "
            "num_layers 32 (config.json: 30)") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]
    fits = run_cli("model=smollm2", "base_model=./small", "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert fits.returncode == 0, fits.stderr   # its own group: the same figures


# -- a run whose process is gone ---------------------------------------------------------------------------

def _running_run(root, pid, start=None, host=None):
    from runner.runfolder import RunFolder

    run = root / "20261205-120000-tiny-lora-abcd"
    (run / "logs").mkdir(parents=True)
    process = {"pid": pid, "host": host or platform.node(), **({"start": start} if start is not None else {})}
    (run / "status.json").write_text(json.dumps({"state": "running", "process": process,
                                                 "stages": {"train": {"state": "running"}}}))
    (run / "job.json").write_text(json.dumps({"choices": {"model": "tiny", "adapter": "lora", "gpu": "cpu"}}))
    return RunFolder(run)


def test_a_run_whose_process_is_gone_shows_as_died_with_how_to_resume(tmp_path):
    from runner.runfolder import process_start
    from runner.runs import list_runs, show_run

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()   # its pid now names no process
    folder = _running_run(tmp_path, gone.pid)
    assert " died " in list_runs(tmp_path)
    assert f"is gone: python -m runner.runs resume {folder.run_id}" in show_run(folder)
    # a pid the system gave to another process since: not the run's process
    import shutil

    shutil.rmtree(folder.path)
    folder = _running_run(tmp_path, os.getpid(), start=process_start(os.getpid()) + 1)
    assert " died " in list_runs(tmp_path)
    shutil.rmtree(folder.path)
    folder = _running_run(tmp_path, os.getpid(), start=process_start(os.getpid()))   # alive: running
    assert " running " in list_runs(tmp_path) and "died" not in show_run(folder)


def test_a_run_on_another_host_is_told_from_a_dead_one_by_its_heartbeat(tmp_path, monkeypatch, capsys):
    import time

    from runner import runfolder
    from runner.runs import list_runs, main, show_run

    folder = _running_run(tmp_path, 4242, host="node-7")
    assert " running " in list_runs(tmp_path)   # no heartbeat recorded: nothing to go by
    monkeypatch.setattr(runfolder, "HEARTBEAT_S", 0.05)
    with runfolder.Heartbeat(folder):   # what a stage's runner process does while the stage runs
        first = runfolder.heartbeat_at(folder.path)
        time.sleep(0.3)
        assert runfolder.heartbeat_at(folder.path) > first   # beating
    assert " running " in list_runs(tmp_path)
    assert main(["--runs-root", str(tmp_path), "resume", folder.run_id]) == 2   # not from here while it beats
    assert "is running on node-7 (process 4242" in capsys.readouterr().err
    stale = time.time() - runfolder.HEARTBEAT_STALE_S - 5
    (folder.path / "heartbeat.json").write_text(json.dumps({"at": stale, "host": "node-7", "pid": 4242}))
    assert " died " in list_runs(tmp_path)
    assert f"is gone: python -m runner.runs resume {folder.run_id}" in show_run(folder)


def test_the_train_stage_refuses_to_start_without_disk_for_its_weights(plan, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from runner.pipeline import StageFailed, disk_needed, run_stage
    from runner.runfolder import RunFolder

    full = plan("model=llama2", "adapter=none", "gpu=h100", "backend=local")
    assert disk_needed(full.config) == pytest.approx(8 * 6.74e9, rel=0.01)   # weights + one checkpoint with AdamW
    assert disk_needed(plan("model=llama2", "gpu=h100", "backend=local", "stages.merge=true").config) \
        == pytest.approx(2 * 6.74e9 + 1024 ** 3, rel=0.01)
    folder = RunFolder.create(plan(f"runs_root={tmp_path}").for_run("20261205-120000-tiny-lora-abcd"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 100 * 1024 ** 2))
    with pytest.raises(StageFailed, match=r"not enough disk .* ~1.0 GiB needed, 0.1 GiB free"):
        run_stage(folder, "train")
    status = folder.status()
    assert status["state"] == "failed" and status["stages"]["train"]["state"] == "failed"
    assert not (folder.path / "logs" / "train.log").exists()   # nothing started



@pytest.mark.parametrize("args", [
    ["backend=local"], ["backend=modal", "gpu=a100"], ["-m", "backend=slurm", "gpu=a100"],
    ["-m", "hydra/launcher=runner_submitit_local"], ["-m", "backend=local", "lora_r=8,16"],
    ["-m", "hparams_search=sql_lora", "backend=slurm", "gpu=a100", "hydra.sweeper.n_trials=3"],
], ids=["local", "modal", "slurm", "submitit_local", "grid", "slurm-search"])
def test_a_dry_run_starts_nothing_whatever_the_launcher(tmp_path, args):
    result = run_cli(*args, "dry_run=true", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "# overrides:" in result.stdout and "base_model:" in result.stdout   # the job(s) as they would run
    assert nothing_created(tmp_path)


def test_a_search_whose_trials_all_fail_ends_in_one_line(tmp_path):
    """Each trial fails early in its train stage (a model folder that passes every check made when it is
    planned, but holds no weights and no vocabulary): the search ends with exit 2 and one line saying so,
    not Optuna's "No trials are completed yet" traceback."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copy(ROOT / "tests" / "data" / "small-llama" / name, broken)
    result = run_cli(*SEARCH, "hydra.sweeper.n_trials=2", "gpu=cpu", f"base_model={broken}",
                     f"runs_root={tmp_path / 'runs'}", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: none of the search's 2 trials succeeded: see each trial's line above, or `python -m runner.runs list`" \
        in result.stderr.splitlines() and "Traceback" not in result.stderr

# -- signals ------------------------------------------------------------------------------------------------

def test_sighup_and_sigterm_become_an_interrupt_that_names_them(capsys):
    from runner import signals
    from runner.errors import report

    previous = {s: signal.getsignal(s) for s in signals.SIGNALS}
    signals.install()
    try:
        for signum, code in ((signal.SIGHUP, 129), (signal.SIGTERM, 143)):
            with pytest.raises(KeyboardInterrupt) as stopped:   # what the pipeline catches as Ctrl-C
                os.kill(os.getpid(), signum)
                time.sleep(1)
            assert report(stopped.value) == code
            assert capsys.readouterr().err.strip() == f"interrupted by {signal.Signals(signum).name}"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143)])
def test_sigterm_leaves_the_run_interrupted_with_the_signal_named(tmp_path, signum, code):
    root = tmp_path / "runs"
    # only the runner gets the signal (as from `timeout` or `kill PID`): it stops the stage's process itself
    process = subprocess.Popen([sys.executable, "-m", "runner", "num_epochs=1", "max_steps=200", "stages.eval=false",
                                f"runs_root={root}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_train_steps(root, process)   # until the trainer has logged its first steps
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == code and err.strip().endswith(f"interrupted by {name}"), err[-2000:]
    (run,) = [p for p in root.iterdir() if not p.name.startswith("_")]
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["signal"], status["stages"]["train"]["state"]) == ("interrupted", name, "interrupted")
    children = subprocess.run(["pgrep", "-f", str(run)], capture_output=True, text=True).stdout.split()
    assert not children, "the train stage's process outlived the runner"
    # the trainer finished its step and saved a checkpoint to resume from (one epoch saves only at its end)
    assert "graceful_stop: SIGTERM received: saving a checkpoint" in (run / "logs" / "train.log").read_text()
    assert list((run / "outputs").glob("checkpoint-*/trainer_state.json"))



@pytest.mark.slow
def test_a_trainer_stopped_by_a_signal_of_its_own_is_not_a_finished_run(tmp_path):
    """Slurm signals every process of a job, the trainer too; so do an admin's `kill` and some schedulers. A
    trainer stopped that way saves a checkpoint and ends with 128 + the signal: the stage fails naming the
    checkpoint and how to continue (it used to save the half-trained model as the result), and resume does."""
    root = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "runner", "num_epochs=1", "max_steps=30", "stages.eval=false",
                                "stages.merge=false", f"runs_root={root}"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_train_steps(root, process)   # until the trainer has logged its first steps
    # the trainer alone (the oldest: its data loader's forked workers show the same command line)
    trainer = subprocess.run(["pgrep", "-o", "-f", f"axolotl.cli.train {root}"], capture_output=True, text=True).stdout
    os.kill(int(trainer), signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    (run,) = [p for p in root.iterdir() if not p.name.startswith("_")]
    assert process.returncode == 1, err[-2000:]
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert re.fullmatch(rf"error: run {run.name}: train: training stopped by SIGTERM at step (\d+) \(checkpoint-\1 saved\): "
                        rf"`python -m runner.runs resume {run.name}` continues it", line), line
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["stages"]["train"]["state"]) == ("failed", "failed")
    assert not (run / "outputs" / "adapter_model.safetensors").exists()   # no half-trained result
    resumed = run_cli("--runs-root", str(root), "resume", run.name, module="runner.runs", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["state"] == "succeeded"
    steps = [r for r in json.loads((run / "logs" / "train_history.json").read_text()) if "loss" in r]
    assert len(steps) == 30

# -- two runners, one runs root, the same data ----------------------------------------------------------

def test_a_second_job_with_the_same_data_waits_for_the_first_to_tokenise(plan, tmp_path, capsys):
    import threading

    from runner.prepared import TokenisingLock
    from runner.runfolder import RunFolder

    first, second = (RunFolder.create(plan(f"runs_root={tmp_path}", f"lora_r={r}").for_run(f"run-{r}")) for r in (8, 16))
    holder, waiter = TokenisingLock(first), TokenisingLock(second)
    assert holder.path == waiter.path   # one data key, one lock
    holder.acquire()
    thread = threading.Thread(target=waiter.acquire)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()   # waiting while the first job tokenises
    holder.release()
    thread.join(10)
    assert not thread.is_alive() and waiter.waited_for == "run-8"
    assert "preprocess  waiting: run run-8 is tokenising the same data" in capsys.readouterr().err
    waiter.release()
    other = TokenisingLock(RunFolder.create(plan(f"runs_root={tmp_path}", "sequence_len=512").for_run("run-x")))
    assert other.path != holder.path   # other tokens: no waiting


def test_the_tokenising_job_lets_go_at_the_trainers_first_step(plan, tmp_path, monkeypatch):
    from runner import pipeline
    from runner.prepared import TokenisingLock
    from runner.runfolder import RunFolder

    folder = RunFolder.create(plan(f"runs_root={tmp_path}").for_run("run-1"))
    probe = TokenisingLock(RunFolder.create(plan(f"runs_root={tmp_path}").for_run("run-2")))
    seen = []

    def held() -> bool:
        import fcntl
        import os

        fd = os.open(probe.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def run_stage(folder, stage, config=None, env=None, label=None, standby=None, on_record=None):
        if stage == "train":
            seen.append(("before the first step", held()))
            on_record()   # the trainer logs its first step
            seen.append(("after it", held()))
        folder.set_stage(stage, "succeeded")

    monkeypatch.setattr(pipeline, "run_stage", run_stage)
    monkeypatch.setattr(pipeline, "_folds_into_train", lambda folder, config: True)
    pipeline.run_stages(folder, stages=("preprocess", "train"))
    assert seen == [("before the first step", True), ("after it", False)]



@pytest.mark.slow
def test_two_runners_started_at_once_in_one_root_tokenise_once(tmp_path):
    root = tmp_path / "runs"
    args = [sys.executable, "-m", "runner", "num_epochs=1", "max_steps=3", "stages.eval=false", "stages.merge=false",
            f"runs_root={root}"]
    both = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [process.communicate(timeout=600)[1] for process in both]
    assert [process.returncode for process in both] == [0, 0], "\n".join(e[-1500:] for e in errs)
    runs = sorted(p for p in root.iterdir() if not p.name.startswith("_"))
    assert len(runs) == 2   # a folder each
    waited = [e for e in errs if "preprocess  waiting: run " in e and "is tokenising the same data" in e]
    assert len(waited) == 1, errs   # the second waited for the first's tokens, then loaded them
    logs = [(r / "logs" / "train.log").read_text() for r in runs]
    assert sorted("Loading prepared dataset from disk" in log for log in logs) == [False, True]   # tokenised once
    assert all(json.loads((r / "status.json").read_text())["state"] == "succeeded" for r in runs)
