"""Serve a run's model on Modal: vLLM's OpenAI-compatible server, and `complete` for `runner.infer`.

    RUNNER_SERVE_RUN=RUN_ID modal deploy -m runner.serve   # app runner-serve-RUN_ID: /v1/... server + complete
    modal deploy -m runner.serve                           # app runner-serve: complete only, for any Modal run

The weights are read where the Modal backend left them, on the runs Volume (`/runs/RUN_ID/outputs/merged`,
or base + the LoRA adapter in `outputs/` when the run was not merged, the default); the image is the stages' image
(the GPU stack of runner/stack/gpu.lock, vLLM included), declared with the volumes in
runner/backends/modal_app.py; `vllm_command` passes only flags the locked vLLM's `vllm serve` has. The endpoint needs Modal proxy-auth headers (Modal-Key / Modal-Secret, from
a workspace proxy token): nothing is public by accident. Clients send prompts already rendered with the
run's template (`runner.infer` does this), e.g. POST /v1/completions {"model": RUN_ID, "prompt": ...}.

`complete(run_id, questions, options)` takes plain data and runs `runner.infer.Answerer` (the same code
as local inference) in a GPU container; `complete_remotely` calls the deployed one, else runs it in an
ephemeral app.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import modal

from runner.backends.modal_app import BASE_SECRETS, VOLUMES, project_image, runs_dir, runs_volume, settings

RUN_ENV = "RUNNER_SERVE_RUN"          # the run the web server serves (deploy time, and in the container)
GPU_ENV = "RUNNER_SERVE_GPU"          # Modal GPU string; L40S (48 GB) holds a 7B model in bf16 with room for KV cache
ARGS_ENV = "RUNNER_SERVE_VLLM_ARGS"   # extra `vllm serve` flags, e.g. "--max-model-len 4096"
VLLM_PORT = 8000
MINUTES = 60

RUN_ID = os.environ.get(RUN_ENV) or None
GPU = os.environ.get(GPU_ENV) or "L40S"
EXTRA_ARGS = os.environ.get(ARGS_ENV, "")


def serve_app_name(run_id: str | None) -> str:
    name = f"{settings.app_name}-serve" + (f"-{run_id}" if run_id else "")
    return name[:64]   # Modal's limit on app names


app = modal.App(serve_app_name(RUN_ID))
# Containers import this module too: the same environment makes them declare the same functions. It goes
# in before the project's files (project_image): Modal allows no build step after them.
image = project_image({RUN_ENV: RUN_ID or "", GPU_ENV: GPU, ARGS_ENV: EXTRA_ARGS})


def vllm_command(run_dir: Path, config: dict[str, Any], extra: str = "") -> list[str]:
    """`vllm serve` for a run: its merged (or fully trained) model named RUN_ID, or base + adapter as RUN_ID."""
    from runner.evals.generate import adapter_rank
    from runner.evals.models import tuned_model

    run_id = Path(run_dir).name
    ref = tuned_model(run_dir, config)
    if ref.adapter:
        model = [ref.path, "--enable-lora", "--lora-modules", f"{run_id}={ref.adapter}",
                 "--max-lora-rank", str(adapter_rank(ref.adapter))]
    else:
        model = [ref.path, "--served-model-name", run_id]
    if ref.tokenizer:
        model += ["--tokenizer", ref.tokenizer]
    return ["vllm", "serve", *model, "--host", "0.0.0.0", "--port", str(VLLM_PORT), *shlex.split(extra)]


# ---- complete: infer's questions, answered next to the weights -----------------------------------
_answerers: dict[tuple, Any] = {}   # a warm container keeps its last model loaded


def _answer(run_id: str, questions: list[dict[str, Any]], options: dict[str, Any]) -> list[str]:
    from runner.evals.answer import Answerer, InferOptions, Question
    from runner.runfolder import RunFolder

    key = (run_id, tuple(sorted(options.items())))
    if key not in _answerers:
        for old in list(_answerers):
            _answerers.pop(old).close()   # one model per GPU
        if not modal.is_local():
            runs_volume.reload()   # see what the run's stages committed
        folder = RunFolder(runs_dir() / run_id)
        _answerers[key] = Answerer(folder.path, folder.composed(), InferOptions(**options))
    return _answerers[key].answer([Question(**q) for q in questions])


@app.function(image=image, gpu=GPU, volumes=VOLUMES, secrets=BASE_SECRETS, timeout=30 * MINUTES,
              scaledown_window=10 * MINUTES)
def complete(run_id: str, questions: list[dict[str, Any]], options: dict[str, Any]) -> list[str]:
    return _answer(run_id, questions, options)


def complete_remotely(run_id: str, questions: list[dict[str, Any]], options: dict[str, Any]) -> list[str]:
    """The deployed `complete` (this run's serve app, then the shared one), else an ephemeral app."""
    from runner.backends.modal_credentials import require_credentials

    require_credentials()
    for name in (serve_app_name(run_id), serve_app_name(None)):
        try:
            function = modal.Function.from_name(name, "complete")
            function.hydrate()
        except modal.exception.NotFoundError:
            continue
        return function.remote(run_id, questions, options)
    with app.run():
        return complete.remote(run_id, questions, options)


# ---- serve: the OpenAI-compatible server for one run --------------------------------------------
if RUN_ID:
    # Up to 15 minutes to start: vLLM loads the weights from the Volume and captures CUDA graphs.
    @app.function(image=image, gpu=GPU, volumes=VOLUMES, secrets=BASE_SECRETS, timeout=60 * MINUTES,
                  scaledown_window=15 * MINUTES)
    @modal.concurrent(max_inputs=64)   # vLLM batches concurrent requests itself
    @modal.web_server(port=VLLM_PORT, startup_timeout=15 * MINUTES, requires_proxy_auth=True)
    def serve() -> None:
        from runner.runfolder import RunFolder
        from runner.stages import stage_env

        folder = RunFolder(runs_dir() / RUN_ID)
        config = folder.composed()
        # the base model (adapter runs, tokenizer) comes from the pretrained Volume's HF cache, offline
        subprocess.Popen(vllm_command(folder.path, config, EXTRA_ARGS), env={**os.environ, **stage_env(config)})
