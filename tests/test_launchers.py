"""Backends as Hydra launchers: this machine's GPUs shared out side by side, Slurm through Hydra's submitit
launcher (run for real with submitit's local executor), the plugins shown by --cfg hydra, and every
launcher writing the same run folders and sweep table."""

import json
import os
import re
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, wait_for_train_steps
from fakes import nvidia_smi
from runner.backends.local import DevicePool

FOUR_A100 = [f"{i}, NVIDIA A100-SXM4-80GB, 81920" for i in range(4)]
STAGES_OFF = [f"stages.{s}=false" for s in ("preprocess", "train", "merge", "eval")]


def runner(*args, cwd, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def fake_gpus(folder, lines):
    """This machine's GPUs, as nvidia-smi would list them: the only thing faked."""
    rows = [line.split(", ") for line in lines]
    nvidia_smi.install(folder, [(int(index), name, int(memory)) for index, name, memory in rows])
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(lines)))}


def test_device_pool_runs_jobs_side_by_side_and_never_two_on_a_device():
    pool = DevicePool([0, 1, 2, 3])
    holding: dict[int, int] = {}
    lock, overlaps = threading.Lock(), []
    side_by_side = threading.Barrier(3, timeout=30)   # 2 + 1 + 1 GPUs: all three hold theirs at once, or it breaks

    def job(count, barrier=None):
        devices = pool.take(count)
        with lock:
            overlaps.extend(d for d in devices if d in holding)
            holding.update({d: count for d in devices})
        if barrier is not None:
            barrier.wait()
        with lock:
            for d in devices:
                del holding[d]
        pool.give(devices)

    def run(jobs):
        threads = [threading.Thread(target=job, args=args) for args in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)

    run([(2, side_by_side), (1, side_by_side), (1, side_by_side)])
    assert not side_by_side.broken
    run([(n,) for n in (2, 4, 1, 3, 2, 1, 1, 4)])   # more than fit: each waits for its devices
    assert overlaps == [] and sorted(pool.free) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="needs 5 GPUs, this machine has 4"):
        pool.take(5)


@pytest.mark.slow
def test_local_backend_gives_each_job_its_own_gpus(tmp_path):
    """Four jobs (2 + 1 + 1 + 2 GPUs) on a 4-GPU machine: each stage process sees only its job's devices."""
    env = fake_gpus(tmp_path / "bin", FOUR_A100)
    runs = tmp_path / "runs"
    result = runner("-m", "backend=local", "gpu=a100x2,a100,a100,a100x2", "model=tiny", *STAGES_OFF,
                    f"runs_root={runs}", f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    jobs = {}
    for folder in (p for p in runs.iterdir() if not p.name.startswith("_")):
        job = json.loads((folder / "job.json").read_text())
        header = (folder / "logs" / "prepare.log").read_text().splitlines()[1]
        devices = header.removeprefix("# CUDA_VISIBLE_DEVICES=").split(",")
        assert job["launch"]["devices"] == ",".join(devices) and job["launch"]["launcher"] == "runner_local"
        jobs[job["launch"]["job_num"]] = (job["compute"]["processes"], set(devices))
    assert {num: count for num, (count, _) in jobs.items()} == {0: 2, 1: 1, 2: 1, 3: 2}
    assert all(len(devices) == count and devices <= {"0", "1", "2", "3"} for count, devices in jobs.values())
    # the first three fit at once (2 + 1 + 1 = 4): they were given disjoint devices
    assert not (jobs[0][1] & jobs[1][1] or jobs[0][1] & jobs[2][1] or jobs[1][1] & jobs[2][1])
    assert "runner_local" in result.stdout and "GPU 0,1" in result.stdout


def test_slurm_jobs_ask_for_their_own_gpus_cpus_memory_partition_and_time(plan):
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    from runner.launcher import submitit_resources

    big = plan("backend=slurm", "gpu=a100x4", "model=llama2", "backend.partition=gpu", "backend.timeout_h=6")
    small = plan("backend=slurm", "gpu=h100", "model=llama2", "backend.cpus_per_gpu=4", "backend.mem_gb_per_gpu=48")
    assert submitit_resources(big, "slurm") == {
        "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 4, "cpus_per_task": 32, "mem_gb": 256, "timeout_min": 360,
        "name": "runner-llama2-lora", "partition": "gpu"}
    assert {k: submitit_resources(small, "slurm")[k] for k in ("gpus_per_node", "cpus_per_task", "mem_gb")} == {
        "gpus_per_node": 1, "cpus_per_task": 4, "mem_gb": 48}
    # what submitit itself writes into the sbatch script from them
    names = SlurmExecutor._equivalence_dict()
    params = {names.get(k, k): v for k, v in submitit_resources(big, "slurm").items()}
    params["mem"] = f"{params['mem']}GB"
    script = _make_sbatch_string(command="python -m submitit", folder="/tmp/x", **params)
    for line in ("#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=32", "#SBATCH --mem=256GB",
                 "#SBATCH --time=360", "#SBATCH --partition=gpu", "#SBATCH --ntasks-per-node=1"):
        assert line in script, line


def test_a_slurm_job_needs_a_sweep(tmp_path):
    result = runner("backend=slurm", "gpu=a100", "model=llama2", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and "add -m (one job is a sweep of one)" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_cfg_hydra_shows_the_plugins(tmp_path):
    optuna = runner("-m", "hydra/sweeper=optuna", "--cfg", "hydra", cwd=tmp_path)
    assert "runner.search.OptunaSearch" in optuna.stdout   # the plugin, with the runner's checks first, optuna.stderr
    local = runner("-m", "hydra/launcher=submitit_local", "--cfg", "hydra", cwd=tmp_path)
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher" in local.stdout
    slurm = runner("-m", "backend=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert "runner.launcher.SlurmLauncher" in slurm.stdout and "runner.launcher.RunnerSweeper" in slurm.stdout
    assert "mode: MULTIRUN" in slurm.stdout and "max_num_timeout: 3" in slurm.stdout and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_jobs_through_submitits_local_executor(tmp_path):
    """The Slurm path for real, minus Slurm: submitit runs each job in its own process on this machine."""
    runs = tmp_path / "runs"
    result = runner("-m", "backend=slurm", "hydra/launcher=runner_submitit_local", "lora_r=4,8", "num_epochs=1",
                    "max_steps=2", "sequence_len=128", "micro_batch_size=4", "stages.merge=false", "stages.eval=false",
                    f"runs_root={runs}", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    folders = sorted(p for p in runs.iterdir() if not p.name.startswith("_"))
    assert len(folders) == 2
    for folder in folders:
        job = json.loads((folder / "job.json").read_text())
        assert json.loads((folder / "status.json").read_text())["state"] == "succeeded"
        assert job["launch"]["launcher"] == "runner_submitit_local" and job["launch"]["job_id"]
        assert job["overrides"][1].startswith("lora_r=")   # as typed, not in Hydra's ++ form
    (sweep,) = (runs / "_sweeps").iterdir()
    assert (sweep / ".submitit").is_dir() and (sweep / "multirun.yaml").is_file()
    rows = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"] and all("job" in r["where"] for r in rows)
    assert "runner_submitit_local" in result.stdout


@pytest.mark.slow
def test_an_optuna_search_on_the_tiny_model(tmp_path):
    """The shipped search space, two trials, offline; the sweep table marks the trial Optuna found best."""
    import yaml

    runs = tmp_path / "runs"
    result = runner("-m", "hparams_search=sql_lora", "hydra.sweeper.n_trials=2", "num_epochs=1", "max_steps=6",
                    "eval.limit=8", "stages.preprocess=false", "stages.merge=false",
                    "objective.metric=eval.tuned.eval_loss", "objective.direction=minimize",
                    f"runs_root={runs}", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    (sweep,) = (runs / "_sweeps").iterdir()
    record = json.loads((sweep / "sweep.json").read_text())
    values = [row["objective"] for row in record["jobs"]]
    assert len(values) == 2 and all(isinstance(v, float) for v in values)
    assert len({row["overrides"] for row in record["jobs"]}) == 2   # two different points of the space
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min(record["jobs"], key=lambda row: row["objective"])
    assert record["best"] == best["run_id"] and optuna["best_value"] == pytest.approx(best["objective"])
    assert f"* best: job {best['job']}, run {best['run_id']}" in result.stdout


@pytest.mark.slow
def test_a_preempted_slurm_job_requeues_itself_and_resumes_its_run(tmp_path):
    """Preemption on Slurm, minus Slurm: submitit's local executor, and its preemption signal sent to the job's
    process as Slurm would (submitit's LocalJob._interrupt does the same). The job saves a checkpoint, submitit
    requeues it, and the job started again continues the same run folder from that checkpoint."""
    import signal

    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "runner", "-m", "backend=slurm", "hydra/launcher=runner_submitit_local",
                                "num_epochs=1", "max_steps=40", "sequence_len=128", "stages.merge=false", "stages.eval=false",
                                f"runs_root={runs}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    wait_for_train_steps(runs, process)   # until the trainer has logged its first steps
    tasks = subprocess.run(["pgrep", "-f", f"submitit.core._submit {runs}"], capture_output=True, text=True).stdout.split()
    assert len(tasks) == 1, tasks
    os.kill(int(tasks[0]), signal.SIGUSR2)
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:] + out
    (run,) = [p for p in runs.iterdir() if not p.name.startswith("_")]   # one run: continued, not begun again
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "succeeded" and "signal" not in status and status["requeued"] == 1
    log = (run / "logs" / "train.log").read_text()
    assert log.count("\n$ ") == 1, log[-3000:]   # two attempts of the train stage, one log
    first, second = log.split("\n$ ")
    # the runner passed the stop on to the trainer, which finished its step and saved a checkpoint
    stopped_at = int(re.search(r"graceful_stop: SIG\w+ received: saving a checkpoint at step (\d+)", first).group(1))
    assert f"checkpoint-{stopped_at}" in second   # auto-resume picked it
    history = json.loads((run / "logs" / "train_history.json").read_text())
    steps = [r["epoch"] for r in history if "loss" in r]
    assert len(steps) == 40 and steps == sorted(steps)   # every step once: the earlier attempt's, then the rest
    submitit_logs = "".join(p.read_text() for p in (runs / "_sweeps").glob("*/.submitit/*/*_log.*"))
    assert "this job is preempted" in submitit_logs and "Requeued job" in submitit_logs
    assert f"started again (job {json.loads((run / 'job.json').read_text())['launch']['job_id']}, interrupted): stage train, " \
           f"train from checkpoint-{stopped_at}" in submitit_logs
    rows = json.loads(next((runs / "_sweeps").glob("*/sweep.json")).read_text())["jobs"]
    assert [r["status"] for r in rows] == ["succeeded"]
