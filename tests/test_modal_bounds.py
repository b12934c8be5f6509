"""A Modal job's and sweep's worst case (every stage to its timeout, every attempt, queueing behind
backend.max_parallel) is shown in the dry run, and a sweep that cannot fit the sweep function's own limit is
refused in one line before anything is created."""

import pytest

from runner.app import main
from runner.backends import modal_bounds
from runner.errors import UserError
from runner.plan import plan_jobs


def configs(*overrides: str, multirun: bool = True) -> list[dict]:
    return [job.config for job in plan_jobs(["backend=modal", "gpu=a100", *overrides], multirun=multirun)]


def test_a_job_at_its_worst_runs_every_stage_to_its_timeout_on_every_attempt(plan):
    job = plan("backend=modal", "gpu=h100x2", "backend.timeout_h=4", "backend.retries=2", "stages.merge=true",
               "backend.merge_gpu=L40S", "backend.timeouts_min.eval=90")
    price = job.config["gpu"]["usd_per_hour"]   # per GPU
    bound = modal_bounds.job_bound(job.config)
    assert {stage: (s.timeout_h, s.attempts, s.gpus) for stage, s in bound.stages.items()} == {
        "prepare": (0.5, 1, 0), "preprocess": (0.5, 1, 0), "train": (4, 3, 2), "merge": (1, 1, 1), "eval": (1.5, 1, 2)}
    assert bound.hours == 0.5 + 0.5 + 4 * 3 + 1 + 1.5
    l40s = modal_bounds.gpu_prices()["L40S"]
    assert bound.gpu_cost_usd == pytest.approx(4 * 3 * 2 * price + 1 * l40s + 1.5 * 2 * price)
    # the plan carries it: the compute line's "at most" is this worst case, not one attempt of train alone
    assert (job.compute.max_hours, job.compute.max_cost_usd, job.compute.attempts) == (15.5, bound.gpu_cost_usd, 3)
    assert f"(at most ${bound.gpu_cost_usd:.2f} in 15.5 h: every stage to its timeout, 3 train attempts)" in \
        job.compute.describe()


def test_the_dry_run_shows_the_worst_case_of_each_job_and_of_the_sweep(tmp_path, capsys):
    assert main(["-m", "backend=modal", "gpu=a100", "lora_r=8,16", "dry_run=true", f"runs_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert out.count("# worst case (Modal): prepare 0.5 h, preprocess 0.5 h, train 10 h × 2 attempts, eval 1 h "
                     "= 22 h of the 24 h the sweep function may run") == 2
    # the second job may wait for the first's download and tokenising (same model and data), then redo them
    sweep = modal_bounds.sweep_bound(configs("lora_r=8,16"))
    assert [job.hours for job in sweep.jobs] == [22, 23] and sweep.hours == 23
    assert out.rstrip().splitlines()[-1] == (
        f"# sweep on Modal: 2 jobs, 2 at a time: at most 23 h (the sweep function may run 24 h) and "
        f"${sweep.gpu_cost_usd:,.2f} of GPU time")


def test_queueing_behind_max_parallel_counts_every_round():
    sweep = modal_bounds.sweep_bound(configs("lora_r=8,16,32,64,128", "backend.max_parallel=2", "backend.timeout_h=2"))
    # 6 h for the first job, 7 h for the others (their shared stages' wait); places free in plan order
    assert [job.hours for job in sweep.jobs] == [6, 7, 7, 7, 7]
    assert sweep.hours == 6 + 7 + 7
    assert modal_bounds.sweep_bound(configs("lora_r=8,16,32,64,128", "backend.timeout_h=2")).hours == 7


@pytest.mark.parametrize("overrides,message", [
    (["-m", "lora_r=8,16,32", "backend.max_parallel=2"],
     "error: this sweep may run 45 h on Modal (3 jobs, 2 at a time, each up to 23 h: every stage to its timeout "
     "on every attempt), more than the 24 h Modal allows its sweep function: raise backend.max_parallel to 3, "
     "lower backend.timeout_h (or backend.retries) or split the sweep"),
    (["backend.timeout_h=12"],
     "error: this job may run 26 h on Modal (prepare 0.5 h, preprocess 0.5 h, train 12 h × 2 attempts, eval 1 h), "
     "more than the 24 h Modal allows the sweep function that runs it: lower backend.timeout_h to at most 11, "
     "backend.retries or backend.timeouts_min.*"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_sweep_that_cannot_fit_is_refused_before_anything_is_created(tmp_path, capsys, monkeypatch, overrides,
                                                                       message, dry_run):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")   # past the credentials check: nothing may be uploaded
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    runs = tmp_path / "runs"
    rc = main(["backend=modal", "gpu=a100", *overrides, f"dry_run={str(dry_run).lower()}", f"runs_root={runs}"])
    assert (rc, capsys.readouterr().err.strip()) == (2, message)
    assert not runs.exists()


def test_the_default_modal_settings_fit_a_sweep_of_max_parallel_jobs():
    sweep = modal_bounds.check_sweep(configs("lora_r=1,2,3,4,5,6,7,8", "stages.merge=true"))
    assert len(sweep.jobs) == sweep.max_parallel == 8 and sweep.hours <= modal_bounds.SWEEP_LIMIT_H
    with pytest.raises(UserError, match="raise backend.max_parallel to 9"):
        modal_bounds.check_sweep(configs("lora_r=1,2,3,4,5,6,7,8,9"))
