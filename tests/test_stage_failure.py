"""A failing stage stops its run with the log's tail and the stage marked failed; a sweep goes on."""

import json

import pytest

pytestmark = pytest.mark.slow   # minutes: a real pipeline or every combination; CI runs it


def test_failing_stage_is_marked_and_reported_and_the_sweep_continues(cli, tmp_path):
    # model=tiny: planned as the tiny model (no config.json read), so the missing folders fail in the train stage
    result = cli("--multirun", "model=tiny", "base_model=/nonexistent/model-a,/nonexistent/model-b", "stages.prepare=false",
                 f"runs_root={tmp_path}", timeout=600)
    assert result.returncode == 1
    # one process trains, so it also tokenises (the preprocess stage is folded into it): train fails
    assert result.stderr.count("error: stage 'train' failed") == 2, result.stderr[-2000:]
    assert "last lines of" in result.stderr
    run_dirs = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("_"))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "failed" and status["failed_stage"] == "train"
        assert status["stages"]["prepare"]["state"] == "skipped"
        assert status["stages"]["preprocess"]["state"] == "skipped"
        assert status["stages"]["train"]["state"] == "failed"
        assert status["stages"]["eval"]["state"] == "pending"
        assert "/nonexistent/model" in (run_dir / "logs" / "train.log").read_text()
    # the sweep ends with a table of both jobs
    assert "failed (train)" in result.stdout and "base_model=/nonexistent/model-b" in result.stdout
