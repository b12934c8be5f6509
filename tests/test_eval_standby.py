"""The eval stage's process on standby: started with the train stage on GPU jobs, it imports while the
model trains, then evaluates when let go, or exits unused when train does not succeed."""

import time

import pytest

from runner import pipeline
from runner.stages import evaluate, stage_env
from runner.stages.logged import Standby, run_logged
from test_eval_stage import QUICK, counted_loads, make_run, tiny_model  # noqa: F401 - the module-scoped tiny model fixture


def start(folder) -> Standby:
    config = folder.composed()
    return Standby(evaluate.command(folder.path, config, standby=True), env=stage_env(config), cwd=folder.path)


def test_a_standby_eval_waits_then_evaluates_when_let_go(plan, tmp_path, tiny_model):
    folder = make_run(plan, tmp_path, tiny_model, eval_settings={**QUICK, "limit": 3}, tuned="trained adapter")
    standby = start(folder)
    time.sleep(1.0)
    assert standby.process.poll() is None and "eval" not in folder.metrics()   # imported, waiting
    output = run_logged(standby.cmd, folder.log_file("eval"), "eval", standby=standby)
    assert output.returncode == 0
    record = folder.metrics()["eval"]
    assert record["n"] == 3 and abs(record["tuned"]["eval_loss"] - record["base"]["eval_loss"]) > 1e-3
    assert "--standby" in folder.log_file("eval").read_text().splitlines()[0]


def test_a_discarded_standby_exits_without_evaluating(plan, tmp_path, tiny_model):
    folder = make_run(plan, tmp_path, tiny_model, eval_settings=QUICK, tuned="adapter")
    standby = start(folder)
    standby.discard()   # at once, while it imports
    assert standby.process.returncode is not None and "eval" not in folder.metrics()
    standby = start(folder)
    standby.process.stdin.close()   # the pipeline ended before train did: it finds no `go` and leaves
    assert standby.process.wait(timeout=120) == 0 and "eval" not in folder.metrics()


def test_gpu_jobs_put_eval_on_standby_cpu_jobs_do_not(plan):
    assert pipeline._eval_on_standby(plan("gpu=h200", "model=llama2").config)
    assert not pipeline._eval_on_standby(plan("gpu=h200", "model=llama2", "stages.eval=false").config)
    assert not pipeline._eval_on_standby(plan().config)   # the CPU: importing would slow training down


def test_a_failed_train_discards_the_standby(plan, tmp_path, tiny_model, monkeypatch):
    folder = make_run(plan, tmp_path, tiny_model, tuned="adapter")
    events = []

    class Recorded:
        def __init__(self, cmd, env=None, cwd=None):
            self.cmd = cmd
            events.append("started")

        def discard(self):
            events.append("discarded")

    def run_stage(folder, stage, config, env, label, standby=None, on_record=None):
        events.append(stage)
        if stage == "train":
            raise pipeline.StageFailed("train", 1, [], folder.log_file("train"))

    monkeypatch.setattr(pipeline, "_eval_on_standby", lambda config: True)
    monkeypatch.setattr(pipeline, "Standby", Recorded)
    monkeypatch.setattr(pipeline, "run_stage", run_stage)
    with pytest.raises(pipeline.StageFailed):
        pipeline.run_stages(folder, stages=("train", "eval"))
    assert events == ["started", "train", "discarded"]


def test_the_base_is_evaluated_ahead_while_training_and_the_tuned_model_after(plan, tmp_path, tiny_model, monkeypatch):
    """`ahead` scores the base and keeps its weights; once the adapter exists, `finish` merges it into them:
    one load, and the same figures as an eval that waited for the trainer."""
    import shutil

    folder = make_run(plan, tmp_path / "ahead", tiny_model, eval_settings=QUICK, tuned="none")
    waited = make_run(plan, tmp_path / "waited", tiny_model, eval_settings=QUICK, tuned="trained adapter")
    loads = counted_loads(monkeypatch)
    evaluation = evaluate.Evaluation(folder.path, folder.composed())
    evaluation.ahead(memory_bytes=1 << 30)   # the trainer is still running: no adapter yet
    assert "base" in evaluation.results and "eval" not in folder.metrics() and loads == [str(tiny_model)]
    shutil.copytree(waited.outputs, folder.outputs, dirs_exist_ok=True)   # the train stage ends
    record = evaluation.finish()
    assert loads == [str(tiny_model)] and record["base_ahead"] is True
    expected = evaluate.evaluate_run(waited.path, waited.composed())
    timing = ("generate_s", "generate_tok_s", "phase_s")
    for variant in ("base", "tuned"):
        assert {k: v for k, v in record[variant].items() if k not in timing} == {
            k: v for k, v in expected[variant].items() if k not in timing}


def test_a_full_gpu_leaves_the_base_for_after_training(plan, tmp_path, tiny_model, monkeypatch):
    import torch

    folder = make_run(plan, tmp_path, tiny_model, eval_settings={**QUICK, "limit": 2}, tuned="adapter")
    evaluation = evaluate.Evaluation(folder.path, folder.composed())

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(evaluation, "_evaluate", out_of_memory)
    evaluation.ahead(memory_bytes=1 << 30)
    assert evaluation.results == {} and evaluation.memory.ref is None
    monkeypatch.undo()
    record = evaluation.finish()
    assert record["n"] == 2 and "base" in record and "base_ahead" not in record


def test_the_base_goes_ahead_only_where_the_trainer_leaves_room(plan, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert evaluate.ahead_memory(plan("gpu=h100", "model=smollm2").config) is None   # a CPU: the trainer's cores
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gpu, model, gib, room in [("h100", "smollm2", 80, True), ("h100", "llama2", 80, True),
                                  ("a10g", "llama2", 24, False)]:
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda device, gib=gib: type("Card", (), {"total_memory": gib * 1024**3})())
        budget = evaluate.ahead_memory(plan(f"gpu={gpu}", f"model={model}").config)
        assert (budget is not None and budget >= 1024**3) == room, (gpu, model, budget)
