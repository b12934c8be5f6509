"""The Modal app builds offline, and each job's stage resources come from its own composed config."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

from runner.compose import group_options
from runner.compute import parse_modal_gpu
from runner.errors import UserError
from runner.settings import STAGES

import modal  # a hard dependency: a broken install fails here, not as skips
from modal._utils.async_utils import synchronizer  # noqa: E402

from runner.backends import modal_app, modal_launcher  # noqa: E402
from runner.backends import modal_settings as ms  # noqa: E402

GPU_OPTIONS = [o for o in group_options()["gpu"] if o != "cpu"]


def options_of(cls) -> "object":
    """The _ServiceOptions Modal will send for a with_options class (Modal's own record, not ours)."""
    return synchronizer._translate_in(cls)._options


def named(objects) -> dict:
    return {path: synchronizer._translate_in(obj)._name for path, obj in objects}


def request_for(plan, *overrides):
    job = plan("backend=modal", *overrides)
    return job, modal_launcher.job_request(job, 1, "run-1", modal_app.runs_dir(), modal_app.pretrained_dir())


def test_app_images_volumes_and_functions_build_without_network():
    settings = modal_app.settings
    assert modal_app.app.name == settings.app_name == "runner"
    assert isinstance(modal_app.image, modal.Image) and isinstance(modal_app.stack_image, modal.Image)
    assert named(modal_app.VOLUMES.items()) == {"/pretrained": "runner-pretrained", "/runs": "runner-runs"}
    assert set(modal_app.app.registered_classes) == {"Prepare", "Preprocess", "Train", "Merge", "Eval"}
    assert "sweep" in modal_app.app.registered_functions
    assert list(modal_app.STAGE_CLASSES) == list(STAGES)
    # only names, images and GPU strings travel in the image environment, never a secret value
    assert set(json.loads(settings.to_json())) == {"app_name", "pretrained_volume", "runs_volume", "hf_secret",
                                                   "wandb_secret", "gpu_fallbacks"}


def test_app_settings_come_from_the_launcher(monkeypatch):
    changed = ms.ModalSettings("other", "p", "r", None, None)
    monkeypatch.setenv(modal_app.SETTINGS_ENV, changed.to_json())
    assert modal_app._settings() == changed
    monkeypatch.delenv(modal_app.SETTINGS_ENV)
    assert modal_app._settings().app_name == "runner"   # conf/backend/modal.yaml as written


@pytest.mark.parametrize("gpu", GPU_OPTIONS)
def test_train_function_resources_match_the_composed_config(plan, gpu):
    job, request = request_for(plan, f"gpu={gpu}")
    options = options_of(modal_app.stage_instance(request, "train"))
    name, count = parse_modal_gpu(job.config["gpu"]["modal"])
    assert (options.resources.gpu_config.gpu_type, options.resources.gpu_config.count) == (name, count)
    assert count == job.config["gpu"]["count"] == job.compute.processes
    assert options.timeout_secs == job.config["backend"]["timeout_h"] * 3600
    assert options.retry_policy.retries == job.config["backend"]["retries"]
    assert named(options.validated_volumes) == {"/pretrained": "runner-pretrained", "/runs": "runner-runs"}
    assert not options.secrets   # public models need no Secret (backend.secrets.huggingface is null)
    # eval runs on the job's GPUs too; prepare, preprocess and merge on CPU
    assert options_of(modal_app.stage_instance(request, "eval")).resources.gpu_config.gpu_type == name
    for stage in ("prepare", "preprocess", "merge"):
        resources = options_of(modal_app.stage_instance(request, stage)).resources
        assert not resources.gpu_config.gpu_type and resources.milli_cpu > 0


def test_sweep_gives_each_job_its_own_gpus():
    from runner.plan import plan_jobs

    jobs = plan_jobs(["backend=modal", "gpu=a100x2,h100x4"], multirun=True)
    gpus = [modal_launcher.job_request(j, i, f"r{i}", modal_app.runs_dir(), modal_app.pretrained_dir())["options"]["train"]["gpu"]
            for i, j in enumerate(jobs)]
    assert gpus == ["A100-80GB:2", "H100:4"]


def test_one_sweep_uses_one_app():
    from runner.plan import plan_jobs

    jobs = plan_jobs(["backend=modal", "gpu=a100", "backend.volumes.runs=a,b"], multirun=True)
    with pytest.raises(UserError, match="one sweep must use one Modal app"):
        modal_launcher.sweep_settings(jobs)


def test_backend_settings_reach_the_stage_options(plan):
    _, request = request_for(plan, "gpu=h100", "tracking=wandb", "backend.timeout_h=2", "backend.retries=3",
                             "backend.merge_gpu=L40S", "backend.timeouts_min.preprocess=5",
                             "backend.secrets.huggingface=hf-token")
    train = options_of(modal_app.stage_instance(request, "train"))
    assert (train.timeout_secs, train.retry_policy.retries) == (7200, 3)
    assert [synchronizer._translate_in(s)._name for s in train.secrets] == ["hf-token", "wandb"]
    assert options_of(modal_app.stage_instance(request, "merge")).resources.gpu_config.gpu_type == "L40S"
    assert options_of(modal_app.stage_instance(request, "preprocess")).timeout_secs == 300
    assert request["options"]["prepare"]["secrets"] == ["hf-token"]   # W&B only where metrics are logged


@pytest.mark.parametrize("overrides,message", [
    (["gpu=cpu"], "backend=modal needs a GPU"),
    (["gpu=a100", "backend.merge_gpu=A200"], "unknown Modal GPU 'A200'"),
    (["gpu=a100", "backend.eval_gpu=H100:9"], "count must be 1-8"),
    (["gpu=a100", "backend.timeout_h=30"], "at most 24"),
    (["gpu=a100", "backend.retries=-1"], "backend.retries"),
    (["gpu=a100", "backend.max_paralel=2"], "did you mean 'backend.max_parallel'"),
    (["gpu=a100", "tracking=wandb", "backend.secrets.wandb=null"], "backend.secrets.wandb"),
])
def test_bad_modal_settings_are_one_line_errors(overrides, message):
    from runner.plan import plan_jobs

    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        jobs = plan_jobs(["backend=modal", *overrides], multirun=False)
        ms.stage_options(jobs[0].config)
        ms.max_parallel(jobs[0].config)


def test_modal_dry_run_prints_the_gpu_string_without_heavy_imports():
    code = ("import sys; from runner.app import main; rc = main(['backend=modal', 'gpu=a100x4', 'dry_run=true']);"
            "heavy = [m for m in ('modal', 'torch', 'axolotl', 'transformers') if m in sys.modules];"
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "gpu=A100-80GB:4  processes=4" in out.stdout and "backend=modal" in out.stdout
    assert "HEAVY []" in out.stdout


def test_missing_credentials_stop_before_anything(tmp_path, cli):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "none.toml"))
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "runner", "backend=modal", "gpu=a100", f"runs_root={runs}"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: no Modal credentials found: run `modal setup` "
                                  "(or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")
    assert not runs.exists()


def test_missing_secret_is_one_line_before_any_upload(tmp_path, monkeypatch, capsys):
    from modal.exception import NotFoundError

    from runner.app import main

    class MissingSecret:
        def hydrate(self):
            raise NotFoundError("Secret 'huggingface' not found")

    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    monkeypatch.setattr(modal.Secret, "from_name", lambda name, **kw: MissingSecret())
    assert main(["backend=modal", "gpu=a100", "backend.secrets.huggingface=hf", f"runs_root={tmp_path / 'runs'}"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: Modal Secret 'hf' not found: create it with `modal secret create hf HF_TOKEN=hf_...` or set "
        "backend.secrets.huggingface to another (or null, for public models)")
    assert not (tmp_path / "runs").exists()
    assert main(["backend=modal", "gpu=a100", "tracking=wandb", f"runs_root={tmp_path / 'runs'}"]) == 2
    assert "`modal secret create wandb WANDB_API_KEY=...`" in capsys.readouterr().err
