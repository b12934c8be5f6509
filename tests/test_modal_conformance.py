"""The Modal app as Modal's own client sees it, offline: every object started through the real SDK
(`app.run()`: image layer rules, mounts, function and class definitions, per-job `with_options`, spawn,
Ctrl-C) against the in-process control plane of tests/fakes/modal_server.py. Only the server's answers are
made up; every check on the client side is Modal's."""

import os
import signal

import pytest

from fakes.modal_server import modal_server  # noqa: F401 - the fixture
from modal_proto import api_pb2

from runner.records import read_json
from runner.runfolder import RunFolder


@pytest.fixture
def ctrl_c_handler():
    """Python's own SIGINT handler, which Modal's client turns into KeyboardInterrupt (a suite started in the
    background inherits SIGINT ignored, and the signal would then never arrive)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_an_attached_run_stops_the_app_and_exits_130(modal_server, ctrl_c_handler, tmp_path,  # noqa: F811
                                                                   monkeypatch, capsys):
    """A real SIGINT while the launcher waits on the sweep (Modal's FunctionCall.get): Modal's app.run()
    stops the app and swallows the interrupt; the runner still ends as the local backend does on Ctrl-C."""
    from runner.app import main

    monkeypatch.delenv("RUNNER_MODAL_SETTINGS", raising=False)   # the launcher sets it for the app it imports
    sent = []

    def interrupt(request):   # the sweep is running: the user presses Ctrl-C
        if not sent:
            sent.append(request.function_call_id)
            os.kill(os.getpid(), signal.SIGINT)
        return []

    modal_server.outputs = interrupt
    with modal_server.intercept() as ctx:
        rc = main(["backend=modal", "gpu=a100", "backend.poll_s=5", f"runs_root={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert rc == 130 and err.rstrip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err[-2000:]
    assert sent, "the launcher never waited on the sweep"
    (disconnect,) = ctx.get_requests("AppClientDisconnect")   # the app (and so its stages) was stopped
    assert disconnect.reason == api_pb2.APP_DISCONNECT_REASON_KEYBOARD_INTERRUPT
    (run,) = [RunFolder(p) for p in (tmp_path / "runs").iterdir() if (p / "job.json").exists()]
    status = run.status()
    assert status["state"] == "interrupted" and status.get("ended"), status
    assert read_json(run.path / "modal.json")["call_id"] == sent[0]


def test_a_public_model_runs_on_modal_without_any_secret(modal_server, tmp_path, monkeypatch, capsys):  # noqa: F811
    """No Secret is looked up, attached to a function or sent with a job: the default needs no account setup
    beyond `modal setup`. The sweep function's answer is made up (every job succeeded); the rest is real."""
    from runner.app import main

    monkeypatch.delenv("RUNNER_MODAL_SETTINGS", raising=False)
    jobs_sent = []

    def sweep(jobs, max_parallel):
        jobs_sent.extend(jobs)
        return [{"index": job["index"], "run_id": job["run_id"], "state": "succeeded", "failed_stage": None,
                 "error": None, "skipped": {}} for job in jobs]

    modal_server.answer_calls(sweep)
    with modal_server.intercept() as ctx:
        rc = main(["backend=modal", "gpu=a100", "backend.poll_s=5", f"runs_root={tmp_path / 'runs'}"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert ctx.get_requests("SecretGetOrCreate") == []
    assert all(not request.function.secret_ids for request in ctx.get_requests("FunctionCreate"))
    (job,) = jobs_sent
    assert all(options["secrets"] == [] for options in job["options"].values())
