"""The `backend` node: where a job's stages run (conf/backend/*.yaml). One schema for all three options:
`auto` carries Modal's settings for the jobs it sends there; `local` leaves them at their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from runner.schema.ranges import Range, positive

BACKENDS = ("auto", "local", "modal", "slurm")


@dataclass
class StageTimeouts:
    """Minutes each Modal stage may run (train: timeout_h)."""

    prepare: float = 30
    preprocess: float = 30
    merge: float = 60
    eval: float = 60


@dataclass
class Volumes:
    pretrained: str = "runner-pretrained"   # the Hugging Face cache: each base model downloaded once
    runs: str = "runner-runs"               # run folders, same layout as locally


@dataclass
class Secrets:
    """Modal Secret names; null attaches none (public models need no HF token; wandb only with tracking=wandb)."""

    huggingface: Optional[str] = None
    wandb: Optional[str] = "wandb"


@dataclass
class BackendSettings:
    name: str = "auto"                    # auto | local | modal | slurm
    timeout_h: Optional[float] = None     # Modal: the train stage's limit (Modal allows 24); Slurm: the job's
    app_name: str = "runner"
    max_parallel: int = 8                 # concurrent jobs of a Modal sweep
    poll_s: float = 15                    # while attached: how often run status is copied back
    timeouts_min: StageTimeouts = field(default_factory=StageTimeouts)
    retries: int = 1                      # train: a preempted or failed attempt resumes from its checkpoint
    merge_gpu: Optional[str] = None       # null: merge on CPU with merge_memory_gib of RAM
    merge_memory_gib: float = 64
    eval_gpu: Optional[str] = None        # null: the job's own GPU string
    volumes: Volumes = field(default_factory=Volumes)
    secrets: Secrets = field(default_factory=Secrets)
    # Slurm (hydra-submitit-launcher): each job asks for the GPUs of its own gpu option, and per GPU:
    partition: Optional[str] = None
    cpus_per_gpu: int = 8
    mem_gb_per_gpu: float = 64


RANGES = {
    "backend.timeout_h": positive(allow=(None,)),   # Modal allows at most 24 (runner/backends/modal_settings.py)
    "backend.max_parallel": Range(1, integer=True),
    "backend.poll_s": positive(),
    **{f"backend.timeouts_min.{stage}": Range(0, 24 * 60, low_open=True) for stage in ("prepare", "preprocess", "merge", "eval")},
    "backend.retries": Range(0, 10, integer=True),
    "backend.merge_memory_gib": positive(),
    "backend.cpus_per_gpu": Range(1, integer=True),
    "backend.mem_gb_per_gpu": positive(),
}
CHOICES = {"backend.name": BACKENDS}
