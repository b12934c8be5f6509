"""runner/serve.py: the Modal serving app builds offline; its vLLM command and `complete` use the run folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modal  # a hard dependency: a broken install fails here, not as skips

from runner.errors import UserError  # noqa: E402
from runner.records import write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fakes.modal_server import start_in_subprocess  # noqa: E402
from test_eval_stage import build_tiny, keep_environ, make_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "20261127-194637-tiny-lora-6dab"

DESCRIBE = """
import json, modal, runner.serve as s
print(json.dumps({"app": s.app.name, "functions": sorted(s.app.registered_functions),
                  "web": sorted(s.app.registered_web_endpoints), "image": isinstance(s.image, modal.Image),
                  "gpu": s.GPU}))
"""


def describe_app(**env) -> dict:
    """Import runner/serve.py as `modal deploy` does, in a fresh interpreter with no network and no token."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_SERVE_", "MODAL_"))}
    result = subprocess.run([sys.executable, "-c", DESCRIBE], capture_output=True, text=True, cwd=ROOT,
                            env={**clean, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_serving_app_starts_through_the_modal_client():
    """Started as `modal deploy -m runner.serve` does, through Modal's own client against the in-process
    server of tests/fakes/modal_server.py: Modal refuses a build step after `add_local_*` only when it loads
    the image, so importing the module is not enough."""
    app = start_in_subprocess("runner.serve", RUNNER_SERVE_RUN=RUN_ID, RUNNER_SERVE_GPU="A100-80GB",
                              RUNNER_SERVE_VLLM_ARGS="--max-model-len 4096")
    serve, complete = app["functions"]["serve"], app["functions"]["complete"]
    assert (serve["web"], complete["web"]) == (True, False)
    assert serve["gpu"] == complete["gpu"] == "A100-80GB"
    assert serve["volumes"] == complete["volumes"] == ["/pretrained", "/runs"]
    # containers import the module with the deploy's environment, so they declare the same functions
    assert {k: serve["env"][k] for k in ("RUNNER_SERVE_RUN", "RUNNER_SERVE_GPU", "RUNNER_SERVE_VLLM_ARGS")} == {
        "RUNNER_SERVE_RUN": RUN_ID, "RUNNER_SERVE_GPU": "A100-80GB", "RUNNER_SERVE_VLLM_ARGS": "--max-model-len 4096"}


def test_serving_app_for_one_run_builds_offline():
    app = describe_app(RUNNER_SERVE_RUN=RUN_ID, RUNNER_SERVE_GPU="A100-80GB")
    assert app == {"app": f"runner-serve-{RUN_ID}", "functions": ["complete", "serve"], "web": ["serve"],
                   "image": True, "gpu": "A100-80GB"}


def test_without_a_run_the_app_only_answers_infer():
    assert describe_app() == {"app": "runner-serve", "functions": ["complete"], "web": [], "image": True, "gpu": "L40S"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-llama")


def test_vllm_serves_the_merged_model_under_the_run_id(plan, tmp_path, tiny_model):
    from runner import serve

    folder = make_run(plan, tmp_path, tiny_model, run_id=RUN_ID)
    command = serve.vllm_command(folder.path, folder.composed(), "--max-model-len 1024")
    assert command == ["vllm", "serve", str(folder.merged), "--served-model-name", RUN_ID, "--host", "0.0.0.0",
                       "--port", "8000", "--max-model-len", "1024"]


def test_vllm_serves_base_plus_adapter_when_the_merge_was_off(plan, tmp_path, tiny_model):
    from runner import serve

    folder = make_run(plan, tmp_path, tiny_model, run_id=RUN_ID, tuned="none")
    write_json(folder.outputs / "adapter_config.json", {"r": 24})
    command = serve.vllm_command(folder.path, folder.composed())
    assert command[:9] == ["vllm", "serve", str(tiny_model), "--enable-lora", "--lora-modules",
                           f"{RUN_ID}={folder.outputs}", "--max-lora-rank", "32", "--host"]


def test_complete_runs_infer_next_to_the_weights(plan, tmp_path, tiny_model, monkeypatch):
    from runner import serve

    keep_environ(monkeypatch)
    make_run(plan, tmp_path, tiny_model, run_id=RUN_ID)
    monkeypatch.setenv("RUNNER_MODAL_RUNS_DIR", str(tmp_path))   # the runs Volume's mount, as a plain folder
    questions = [{"prompt": "How many cars?", "context": "CREATE TABLE car (make TEXT, price INTEGER)"}]
    options = {"model": "tuned", "max_new_tokens": 4, "engine": "auto", "raw": False}
    answers = serve.complete.local(RUN_ID, questions, options)
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert serve.complete.local(RUN_ID, questions, options) == answers   # the warm container's model, greedy


def test_remote_infer_without_modal_credentials_is_a_user_error(monkeypatch):
    from modal.config import config

    from runner import serve

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    if config.get("token_id"):
        pytest.skip("this machine has a Modal profile")
    with pytest.raises(UserError, match="no Modal credentials"):
        serve.complete_remotely(RUN_ID, [{"prompt": "x"}], {})


def test_vllm_command_passes_only_options_the_locked_vllm_has(plan, tmp_path, tiny_model):
    """The serve command is checked against `vllm serve --help=all` of the vLLM in runner/stack/gpu.lock."""
    from runner import serve
    from runner.evals.generate import VLLM_LORA_RANKS
    from runner.stack import stack, vllm_serve_flags

    flags = vllm_serve_flags()
    assert flags.version == stack().version("vllm"), "refresh runner/stack/vllm-serve-flags.txt with the lock's vLLM"
    assert {"--served-model-name", "--enable-lora", "--lora-modules", "--max-model-len"} <= flags.options
    assert "--no-such-option" not in flags.options
    for tuned in ("merged", "none"):
        folder = make_run(plan, tmp_path / tuned, tiny_model, run_id=RUN_ID, tuned=tuned)
        if tuned == "none":
            write_json(folder.outputs / "adapter_config.json", {"r": 24})
        command = serve.vllm_command(folder.path, folder.composed())
        assert command[:2] == ["vllm", "serve"]
        used = {arg for arg in command if arg.startswith("-")}
        assert used and used <= flags.options, used - flags.options
    assert set(VLLM_LORA_RANKS) <= set(flags.lora_ranks)   # adapter_rank picks a value vLLM accepts
