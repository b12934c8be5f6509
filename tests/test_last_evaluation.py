"""The trainer does not evaluate at its last step when the eval stage measures the same held-out loss
(runner/integrations/last_evaluation.py); the eval stage's tuned loss then closes the curve
(runner/pipeline.py close_curve)."""

import json

from runner.plan import LAST_EVALUATION


def test_the_trainer_evaluates_on_schedule_except_at_its_last_step(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    from runner.integrations.last_evaluation import NoEvaluationAtTheEnd

    def evaluated_at(*callbacks, strategy="steps"):
        args = TrainingArguments(output_dir=str(tmp_path), eval_strategy=strategy, eval_steps=3, report_to=[])
        handler = CallbackHandler(list(callbacks), None, None, None, None)
        state, control, steps = TrainerState(max_steps=9, eval_steps=3), TrainerControl(), []
        for epoch in range(3):
            for _ in range(3):
                state.global_step += 1
                control = handler.on_step_end(args, state, control)
                if control.should_evaluate:
                    steps.append(state.global_step)
                    control.should_evaluate = False
            control = handler.on_epoch_end(args, state, control)
            if control.should_evaluate:
                steps.append(f"epoch {epoch + 1}")
                control.should_evaluate = False
        return steps

    assert evaluated_at(DefaultFlowCallback) == [3, 6, 9]   # the trainer alone: the last step too
    assert evaluated_at(DefaultFlowCallback, NoEvaluationAtTheEnd()) == [3, 6]
    assert evaluated_at(DefaultFlowCallback, NoEvaluationAtTheEnd(), strategy="epoch") == ["epoch 1", "epoch 2"]


def test_the_plugin_is_on_where_the_eval_stage_scores_the_whole_split(plan):
    assert LAST_EVALUATION in plan().config["plugins"]
    for off in ("stages.eval=false", "eval.limit=10", "+load_best_model_at_end=true"):
        assert LAST_EVALUATION not in plan(off).config["plugins"], off


def test_the_eval_stage_closes_the_curve_the_trainer_left_open(tmp_path):
    from runner.pipeline import close_curve
    from runner.runfolder import RunFolder

    (tmp_path / "logs").mkdir()
    history = [{"loss": 1.2, "epoch": 0.5, "step": 3}, {"eval_loss": 0.9, "epoch": 1.0, "step": 6},
               {"eval_loss": 0.6, "epoch": 2.0, "step": 12},
               {"train_runtime": 10.0, "epoch": 3.0, "step": 18}]
    (tmp_path / "logs" / "train_history.json").write_text(json.dumps(history))
    folder = RunFolder(tmp_path)
    folder.update_metrics(eval={"tuned": {"eval_loss": 0.5}})
    close_curve(folder)
    closed = json.loads((tmp_path / "logs" / "train_history.json").read_text())
    assert closed[-2] == {"epoch": 3.0, "eval_loss": 0.5, "step": 18, "source": "eval stage"}
    assert "train_runtime" in closed[-1]
    metrics = folder.metrics()
    assert metrics["eval_loss"] == {"first": 0.9, "last": 0.5, "logged": 3, "first_epoch": 1.0, "last_epoch": 3.0}
    assert metrics["eval_curve"]["verdict"] == "still_improving" and metrics["eval_curve"]["last_epoch"] == 3.0
    close_curve(folder)   # closed already: the trainer's (or this) last point is at the end
    assert json.loads((tmp_path / "logs" / "train_history.json").read_text()) == closed
