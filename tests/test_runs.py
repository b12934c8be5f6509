"""`python -m runner.runs list | show | sync` over local and Modal run folders."""

import pytest

from runner import runs
from runner.backends.modal_records import gpu_usage, write_modal_record
from runner.records import write_json
from runner.runfolder import RunFolder

LOCAL_ID = "20260101-000000-tiny-lora-aaaa"
MODAL_ID = "20260102-000000-tiny-lora-bbbb"


@pytest.fixture
def root(tmp_path, plan):
    root = tmp_path / "runs"
    local = RunFolder.create(plan(f"runs_root={root}").for_run(LOCAL_ID))
    local.set_stage("train", "succeeded")
    local.set_state("succeeded")
    local.update_metrics(train_loss={"first": 3.0, "last": 1.25, "logged": 9},
                         eval_loss={"first": 3.1, "last": 1.5, "logged": 2})
    remote = RunFolder.create(plan(f"runs_root={root}", "backend=modal", "gpu=a100x2").for_run(MODAL_ID))
    write_modal_record(remote.path, {"app": "runner", "call_id": "fc-1", "runs_volume": "runner-runs",
                                     "options": {"prepare": {"gpu": None}, "train": {"gpu": "A100-80GB:2"}},
                                     "usd_per_gpu_hour": 2.5})
    status = remote.status()
    status["state"] = "running"
    status["stages"]["prepare"] = {"state": "succeeded", "started": "2026-01-02T00:00:00+00:00",
                                   "ended": "2026-01-02T00:30:00+00:00"}
    status["stages"]["train"] = {"state": "succeeded", "started": "2026-01-02T01:00:00+00:00",
                                 "ended": "2026-01-02T02:30:00+00:00"}
    write_json(remote.path / "status.json", status)
    return root


def test_list_shows_local_and_modal_runs(root, capsys):
    assert runs.main(["--runs-root", str(root), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "state", "backend"]
    local_line, modal_line = lines[2], lines[3]
    assert local_line.split()[:4] == [LOCAL_ID, "succeeded", "local", "tiny/lora/cpu"]
    assert "1.250" in local_line and "eval_loss 1.500" in local_line
    assert modal_line.split()[:4] == [MODAL_ID, "running", "modal", "tiny/lora/a100x2"]
    assert "3.00" in modal_line and "$7.50" in modal_line   # 1.5 h of train on 2 GPUs at $2.50


def test_eval_column_prefers_the_eval_stages_tuned_score():
    metrics = {"eval_loss": {"last": 1.5}, "eval": {"tuned": {"execution_accuracy": 0.8125}, "base": {}}}
    assert runs.eval_metric(metrics) == "execution_accuracy 0.812"
    assert runs.eval_metric({"eval_loss": {"last": 1.5}}) == "eval_loss 1.500"
    assert runs.eval_metric({}) == "-"


def test_gpu_hours_count_only_gpu_stages(root):
    assert gpu_usage(root / MODAL_ID) == (3.0, 7.5)
    assert gpu_usage(root / LOCAL_ID) == (None, None)


def test_show_accepts_a_unique_prefix(root, capsys):
    assert runs.main(["--runs-root", str(root), "show", "20260102"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {MODAL_ID}  running  (backend modal)")
    assert "backend=modal gpu=a100x2" in out and "GPU-hours   3.00  (~$7.50)" in out
    assert f"runs Volume 'runner-runs': /{MODAL_ID}/outputs" in out


def test_unknown_run_is_one_line_with_a_suggestion(root, capsys):
    assert runs.main(["--runs-root", str(root), "show", LOCAL_ID[:-1] + "x"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no run '{LOCAL_ID[:-1]}x' under {root} (did you mean '{LOCAL_ID}'?)\n"
    assert runs.main(["--runs-root", str(root), "show", "nothing-like-it"]) == 2
    assert "see `python -m runner.runs list`" in capsys.readouterr().err


def test_unknown_command_and_empty_root(tmp_path, capsys):
    assert runs.main(["lsit"]) == 2
    assert "did you mean 'list'" in capsys.readouterr().err
    assert runs.main(["--runs-root", str(tmp_path / "none"), "list"]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_sync_without_credentials_is_one_line(root, monkeypatch, tmp_path, capsys):
    import modal  # noqa: F401 - a hard dependency
    import modal.config

    for key in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(modal.config, "_user_config", {})
    assert runs.main(["--runs-root", str(root), "sync"]) == 2
    assert capsys.readouterr().err.startswith("error: no Modal credentials found: run `modal setup`")
