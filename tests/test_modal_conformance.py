"""The Modal app as Modal's own client sees it, offline: every object started through the real SDK
(`app.run()`: image layer rules, mounts, function and class definitions, per-job `with_options`, spawn,
Ctrl-C) against the in-process control plane of tests/fakes/modal_server.py. Only the server's answers are
made up; every check on the client side is Modal's."""

import json
import os
import signal
import subprocess
import sys

import pytest

from fakes.modal_server import (created_function, env_of, functions, modal_server, mounted_files,  # noqa: F401 - the fixture
                                start_in_subprocess, started)
from modal_proto import api_pb2

from runner.backends import modal_app, modal_launcher, modal_snapshot
from runner.backends.modal_bounds import SWEEP_LIMIT_H
from runner.backends.modal_settings import MAX_RETRIES, MAX_TIMEOUT_H
from runner.compose import group_options
from runner.compute import MAX_GPUS, MODAL_GPU_TYPES
from runner.records import read_json
from runner.runfolder import RunFolder
from runner.settings import STAGES

GPU_OPTIONS = [o for o in group_options()["gpu"] if o != "cpu"]


def within_modal_limits(gpu: api_pb2.GPUConfig, timeout_s: int, retries: int) -> None:
    """What Modal's server refuses and its client lets through: GPU names and counts, timeouts, retries."""
    if gpu.gpu_type:
        assert gpu.gpu_type in MODAL_GPU_TYPES and 1 <= gpu.count <= MAX_GPUS, gpu
    assert 0 < timeout_s <= MAX_TIMEOUT_H * 3600 and 0 <= retries <= MAX_RETRIES


# ---- every object the apps define -----------------------------------------------------------------
def test_every_function_and_class_of_the_training_app_loads_through_the_modal_client(modal_server):  # noqa: F811
    app = modal_app.app
    calls = started(app)   # Modal's loaders: image layers (no build step after add_local_*), mounts, definitions
    (publish,) = [request for method, request in calls if method == "AppPublish"]
    assert set(publish.function_ids) == set(app.registered_functions)
    assert set(publish.class_ids) == set(app.registered_classes) == {cls.__name__ for cls in modal_app.STAGE_CLASSES.values()}
    definitions = {created_function(r).function_name: created_function(r) for method, r in calls if method == "FunctionCreate"}
    created = functions(calls)
    assert set(created) == set(app.registered_functions)
    for name, function in created.items():
        definition = definitions[name]
        within_modal_limits(definition.resources.gpu_config, function["timeout_s"], function["retries"])
        # every function runs in the project image: the settings (names only) and the project as mounts
        env = env_of(modal_server.images[function["image"]])
        assert json.loads(env["RUNNER_MODAL_SETTINGS"]) == json.loads(modal_app.settings.to_json())
        assert env["RUNNER_PROJECT"] == modal_app.PROJECT_DIR and function["mounts"] >= 2
        assert function["secrets"] == len(modal_app.BASE_SECRETS) * (name != "sweep")
    for cls in modal_app.STAGE_CLASSES.values():
        assert created[f"{cls.__name__}.*"]["methods"] == ["run"] and created[f"{cls.__name__}.*"]["snapshot"]
        assert created[f"{cls.__name__}.*"]["volumes"] == ["/pretrained", "/runs"]
    sweep = created["sweep"]
    assert (sweep["timeout_s"], sweep["nonpreemptible"], sweep["volumes"]) == (SWEEP_LIMIT_H * 3600, True, ["/runs"])
    # what the containers see of the project: the package with its data files, conf/ without experiments
    files = mounted_files(calls)
    for path in ("/root/runner/backends/modal_app.py", "/root/runner/data/sqlqa-train.jsonl",
                 "/root/runner/stack/gpu.lock", "/root/runner/schema/axolotl_keys.json",
                 f"{modal_app.PROJECT_DIR}/conf/config.yaml", f"{modal_app.PROJECT_DIR}/conf/backend/modal.yaml"):
        assert path in files, path
    assert not any("__pycache__" in f or f.endswith(".pyc") or "/conf/experiment/" in f for f in files)


SETTINGS_WITH_HF = json.dumps({"app_name": "runner-hf", "pretrained_volume": "p", "runs_volume": "r",
                               "hf_secret": "huggingface", "wandb_secret": None,
                               "gpu_fallbacks": ["H100:2", "A100-80GB:2"]}, sort_keys=True)   # as to_json()


@pytest.mark.parametrize("module,env,secrets", [
    ("runner.backends.modal_app", {"RUNNER_MODAL_SETTINGS": SETTINGS_WITH_HF}, 1),    # the launcher's settings
    ("runner.serve", {"RUNNER_SERVE_RUN": "20261127-194637-tiny-lora-6dab"}, 0),       # serve one run
    ("runner.serve", {"RUNNER_SERVE_GPU": "H100:2"}, 0),                              # infer's app only
])
def test_every_app_as_modal_deploy_would_start_it(module, env, secrets):
    """Each module imported in a fresh interpreter with the environment that decides what it declares,
    then started through Modal's client: every registered function created, within Modal's limits."""
    app = start_in_subprocess(module, **env)
    assert set(app["functions"]) == set(app["registered"]) and app["functions"]
    for name, function in app["functions"].items():
        gpu, _, count = (function["gpu"] or "").partition(":")
        assert not gpu or (gpu in MODAL_GPU_TYPES and 1 <= int(count or 1) <= MAX_GPUS), (name, function["gpu"])
        assert 0 < function["timeout_s"] <= MAX_TIMEOUT_H * 3600 and function["retries"] <= MAX_RETRIES
        assert function["secrets"] == secrets * (name != "sweep") and function["mounts"] >= 2
        assert {**function["env"], **env} == function["env"]   # the containers declare the same objects
        for gpu in function["gpus"]:
            card, _, count = (gpu or "").partition(":")
            assert not card or (card in MODAL_GPU_TYPES and 1 <= int(count or 1) <= MAX_GPUS), (name, gpu)
    if module == "runner.backends.modal_app":   # the launch's GPU fallback list, declared with the GPU stages
        gpus = {name: function["gpus"] for name, function in app["functions"].items()}
        assert gpus["Train.*"] == gpus["Eval.*"] == ["H100:2", "A100-80GB:2"] and gpus["Merge.*"] == [None]


def test_every_job_s_stage_options_bind_through_the_modal_client(modal_server, plan):  # noqa: F811
    """Each job's own GPU, CPU, memory, timeout, retries, Volumes and Secrets per stage, as Modal's
    Cls.with_options binds them (one FunctionBindParams per stage call), for every gpu option."""
    def request(*overrides):
        job = plan("backend=modal", *overrides)
        return modal_launcher.job_request(job, 1, "run-1", modal_app.runs_dir(), modal_app.pretrained_dir())

    requests = [request(f"gpu={gpu}") for gpu in GPU_OPTIONS] + [
        request("gpu=h100x2", "stages.merge=true", "backend.merge_gpu=L40S", "backend.eval_gpu=A100", "tracking=wandb",
                "backend.secrets.huggingface=hf", "backend.retries=3", "backend.timeout_h=5")]
    with modal_server.intercept() as ctx, modal_app.app.run():
        for job in requests:
            for stage in STAGES:
                modal_app.stage_instance(job, stage).run.hydrate()
    binds = [r.function_options for r in ctx.get_requests("FunctionBindParams")]
    assert len(binds) == len(requests) * len(STAGES)
    secret_names = {r.deployment_name for r in ctx.get_requests("SecretGetOrCreate")}
    assert secret_names == {"hf", "wandb"}
    for options, (job, stage) in zip(binds, [(job, stage) for job in requests for stage in STAGES]):
        wanted = job["options"][stage]
        gpu = options.resources.gpu_config
        within_modal_limits(gpu, options.timeout_secs, options.retry_policy.retries)
        name, _, count = (wanted["gpu"] or "").partition(":")
        assert (gpu.gpu_type, gpu.count) == ((name, int(count or 1)) if name else ("", 0)), (stage, wanted)
        assert (options.timeout_secs, options.retry_policy.retries) == (wanted["timeout_s"], wanted["retries"])
        assert options.resources.milli_cpu == int((wanted["cpu"] or 0) * 1000)
        assert options.resources.memory_mb == (wanted["memory_mib"] or 0)
        assert sorted(v.mount_path for v in options.volume_mounts) == ["/pretrained", "/runs"]
        assert len(options.secret_ids) == len(wanted["secrets"])


def test_a_stage_call_binds_its_own_job_s_options_and_no_other_s(modal_server, plan):  # noqa: F811
    """Modal 1.3's with_options changes an options object shared by every class derived from the stage's
    class, and an instance binds it only when first called: two jobs' calls made one after the other and
    first called in the other order (as the sweep's threads may) must each get their own GPU and Secrets."""
    def request(*overrides):
        job = plan("backend=modal", "stages.merge=true", *overrides)
        return modal_launcher.job_request(job, 1, "run-1", modal_app.runs_dir(), modal_app.pretrained_dir())

    first = request("gpu=a100x2", "tracking=wandb", "backend.merge_gpu=L40S")
    second = request("gpu=h100", "backend.retries=0")
    with modal_server.intercept() as ctx, modal_app.app.run():
        calls = [modal_app.stage_instance(job, stage) for job in (first, second) for stage in ("train", "merge")]
        for call in reversed(calls):
            call.run.hydrate()
    second_merge, second_train, first_merge, first_train = [r.function_options for r in ctx.get_requests("FunctionBindParams")]
    assert (second_train.resources.gpu_config.gpu_type, second_train.resources.gpu_config.count) == ("H100", 1)
    assert (second_train.retry_policy.retries, len(second_train.secret_ids)) == (0, 0)   # no W&B key of the first
    assert not second_merge.resources.gpu_config.gpu_type and second_merge.resources.milli_cpu == 8000
    assert (first_train.resources.gpu_config.gpu_type, first_train.resources.gpu_config.count) == ("A100-80GB", 2)
    assert (first_train.retry_policy.retries, len(first_train.secret_ids)) == (1, 1)
    assert first_merge.resources.gpu_config.gpu_type == "L40S" and not first_merge.resources.milli_cpu


def test_infer_on_a_modal_run_answers_through_the_serve_app(modal_server):  # noqa: F811
    """runner.infer's Modal path: no serve app is deployed, so runner.serve's app is started (every object
    loaded by Modal's client) and its `complete` called with plain data; its answer is made up here."""
    from runner import infer, serve
    from runner.evals.answer import InferOptions, Question

    received = []
    modal_server.answer_calls(lambda *args: received.append(args) or ["SELECT count(*) FROM car"])
    with modal_server.intercept() as ctx:
        answers = infer.answer_remotely("run-1", [Question("How many cars?", "CREATE TABLE car (a INT)")], InferOptions())
    assert answers == ["SELECT count(*) FROM car"]
    assert [r.app_name for r in ctx.get_requests("FunctionGet")] == [serve.serve_app_name("run-1"), serve.serve_app_name(None)]
    assert set(functions(ctx.calls)) == set(serve.app.registered_functions) == {"complete"}
    assert received == [("run-1", [{"prompt": "How many cars?", "context": "CREATE TABLE car (a INT)"}],
                         {"model": "tuned", "max_new_tokens": 128, "engine": "auto", "raw": False})]


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


def test_the_snapshot_holds_the_container_s_imports_and_no_cuda_state():
    """What runs before a stage container's memory snapshot imports no torch (so no CUDA state can be in it)."""
    probe = ("import json, sys\nfrom runner.backends import modal_snapshot\n"
             "loaded = modal_snapshot.import_container_modules()\n"
             "print(json.dumps({'loaded': loaded, 'torch': [m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'transformers', 'axolotl', 'vllm')]}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["loaded"] == list(modal_snapshot.CONTAINER_MODULES) and found["torch"] == []
    stage = modal_app.STAGE_CLASSES["train"]
    assert issubclass(stage._get_user_cls(), modal_snapshot.SnapshotStage)
