"""The `auto` schedule: epochs, learning rate, row length, micro batch and evaluations from the data and the
model (runner/schedule.py), and what a run's held-out curve says about its length (runner/curve.py)."""

import json
import os

import pytest

from runner import curve, schedule
from runner.paths import data_file

SHIPPED = data_file("sqlqa-train.jsonl")


@pytest.fixture
def records(tmp_path):
    """A JSONL file of the first `n` shipped records, repeated as needed."""
    lines = open(SHIPPED).read().splitlines()

    def make(n: int):
        path = tmp_path / f"train-{n}.jsonl"
        path.write_text("\n".join(lines[i % len(lines)] for i in range(n)) + "\n")
        return str(path)

    return make


def test_small_data_gets_more_epochs_and_smaller_steps(plan, records):
    small = plan("model=smollm2", "gpu=h100", f"dataset.path={records(700)}").config
    assert small["num_epochs"] == 3
    assert small["sample_packing"] is True
    # TARGET_STEPS / 2 to TARGET_STEPS optimizer steps: 700 records x 3 epochs in one row a step
    assert small["micro_batch_size"] == 1 and small["sequence_len"] <= 4096
    average = os.path.getsize(small["dataset"]["path"]) / 700
    steps = 700 * 3 * average / schedule.CHARS_PER_TOKEN / small["sequence_len"]
    assert schedule.TARGET_STEPS / 2 <= steps <= schedule.TARGET_STEPS
    assert small["evals_per_epoch"] == 1   # three held-out evaluations in the run
    large = plan("model=smollm2", "gpu=h100", f"dataset.path={records(20000)}").config
    assert large["num_epochs"] == 1 and large["sequence_len"] == 4096 and large["evals_per_epoch"] == 3


def test_large_data_keeps_the_throughput_micro_batch(plan, records):
    """With data enough to fill them, a 7B keeps the 4 x 4096-token micro batches measured at 7 317
    trainable tokens/s on an H200 (bench/RESULTS.md §12)."""
    job = plan("model=llama2", "gpu=h200", f"dataset.path={records(21000)}").config
    assert (job["sequence_len"], job["micro_batch_size"], job["gradient_checkpointing"]) == (4096, 4, False)


def test_learning_rate_follows_the_model_width_the_adapter_and_the_step(plan, records):
    # large data: rows capped at 4 096 tokens, steps of several rows: the width rule as it is
    assert plan("model=llama2", "gpu=h200", f"dataset.path={records(21000)}").config["learning_rate"] == 2e-4
    assert plan("model=smollm2", "gpu=h100", f"dataset.path={records(20000)}").config["learning_rate"] == 1.4e-3  # x 4096 / 576
    # the shipped 3 000 records: one 4 096-token row a step, twice the 2 048 of the rule's measurements: x sqrt(2)
    assert plan("model=llama2", "gpu=h100").config["learning_rate"] == 2.8e-4
    assert plan("model=smollm2", "gpu=h100").config["learning_rate"] == 2e-3
    assert plan("model=pythia", "gpu=a100").config["learning_rate"] == 5.7e-4
    assert plan("model=llama2", "gpu=h200", "adapter=none").config["learning_rate"] == 2.8e-5


def test_explicit_values_win_and_the_seed_recipe_keeps_its_schedule(plan):
    job = plan("model=smollm2", "gpu=h100", "num_epochs=1", "learning_rate=2e-4", "sequence_len=4096",
               "evals_per_epoch=4").config
    assert (job["num_epochs"], job["learning_rate"], job["sequence_len"], job["evals_per_epoch"]) == (1, 2e-4, 4096, 4)
    seed = plan("model=smollm2", "gpu=h100", "recipe=seed").config
    assert (seed["num_epochs"], seed["learning_rate"], seed["micro_batch_size"], seed["sequence_len"]) == (1, 2e-4, 32, 4096)


def test_rows_always_hold_the_longest_example(plan, tmp_path):
    long_record = {"question": "q " * 10, "context": "CREATE TABLE t (" + "c INTEGER, " * 400 + "d TEXT)",
                   "answer": "[SQL] SELECT d FROM t [/SQL]"}
    short = open(SHIPPED).readline()
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(long_record) + "\n" + short * 300)
    job = plan("model=smollm2", "gpu=h100", f"dataset.path={path}").config
    assert job["sequence_len"] * schedule.LONGEST_CHARS_PER_TOKEN >= len(json.dumps(long_record))


def test_the_cpu_default_is_unchanged(plan):
    """The tiny model's group pins its own schedule (2 epochs at 3e-3, 16 rows of 256 tokens)."""
    tiny = plan().config
    assert (tiny["num_epochs"], tiny["learning_rate"], tiny["micro_batch_size"], tiny["sequence_len"]) == (2, 3e-3, 16, 256)


def test_auto_is_shown_resolved_in_the_dry_run(cli, records):
    done = cli("model=smollm2", "gpu=h100", f"dataset.path={records(700)}", "dry_run=true")
    assert done.returncode == 0, done.stderr
    assert "\nnum_epochs: 3\n" in done.stdout and "\nlearning_rate: 0.002\n" in done.stdout
    assert "auto" not in "".join(line for line in done.stdout.splitlines(True)
                                 if line.startswith(("num_epochs", "learning_rate", "sequence_len", "micro_batch")))


def test_curve_verdicts():
    def history(*losses):
        return [{"epoch": i + 1, "eval_loss": loss} for i, loss in enumerate(losses)]

    falling = curve.judge(history(0.5, 0.3, 0.25))
    assert falling["verdict"] == "still_improving" and falling["best_epoch"] == 3
    assert "more epochs" in curve.describe(falling)
    overfit = curve.judge(history(0.5, 0.2, 0.3))
    assert overfit["verdict"] == "overfit" and overfit["best_epoch"] == 2
    assert "best 0.200 at epoch 2" in curve.describe(overfit)
    assert curve.judge(history(0.5, 0.2, 0.199))["verdict"] == "levelled"
    assert curve.judge(history(0.5)) is None
    assert curve.judge([{"loss": 1.0}]) is None
