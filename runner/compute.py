"""What a job needs from the machine: the backend, Modal GPU string, process count, time limit, cost."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.errors import UserError, did_you_mean

# Modal's GPU names (its server rejects others only after submission, so we check first).
MODAL_GPU_TYPES = ("T4", "L4", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "H100", "H200", "B200")
MAX_GPUS = 8
ASSUMED_MFU = 0.35           # for time estimates: typical LoRA fine-tuning utilisation
# Container start, model load and tokenising before the first step, whatever the data size.
FIXED_OVERHEAD_H = 5 / 60
TOKENS_PER_RECORD_GUESS = 4  # characters per token when no tokenizer is loaded


def parse_modal_gpu(spec: str) -> tuple[str, int]:
    """'A100-80GB:4' → ('A100-80GB', 4); raises UserError for names Modal would reject."""
    match = re.fullmatch(r"([A-Za-z0-9-]+)(?::(\d+))?", spec.strip())
    if not match:
        raise UserError(f"invalid Modal GPU string '{spec}' (expected NAME or NAME:COUNT, e.g. A100-80GB:4)")
    name, count = match.group(1), int(match.group(2) or 1)
    if name.upper() not in MODAL_GPU_TYPES:
        raise UserError(f"unknown Modal GPU '{name}'{did_you_mean(name.upper(), MODAL_GPU_TYPES)}")
    if not 1 <= count <= MAX_GPUS:
        raise UserError(f"Modal GPU count must be 1-{MAX_GPUS}, got {count} in '{spec}'")
    return name.upper(), count


@dataclass(frozen=True)
class ComputeSpec:
    backend: str
    gpu_string: str | None          # Modal's, e.g. "A100-80GB:4"; None on this machine's CPU
    processes: int                  # training processes (one per GPU)
    timeout_h: float | None
    est_hours: float
    est_cost_usd: float
    max_cost_usd: float | None      # Modal: every stage to its timeout on every attempt (modal_bounds.py)
    max_hours: float | None = None  # ... and how long that takes
    attempts: int = 1               # of the train stage
    auto: bool = False              # backend=auto chose the backend ...
    placement: str | None = None    # ... for this reason
    worst_case: str | None = None   # Modal: each stage's share of max_hours, in words

    def describe(self) -> str:
        where = self.gpu_string or "this machine (CPU)"
        timeout = f"{self.timeout_h:g} h" if self.timeout_h else "none"
        cost = f"~${self.est_cost_usd:.2f}"
        if self.max_cost_usd is not None and self.max_hours is not None:
            attempts = f", {self.attempts} train attempts" if self.attempts > 1 else ""
            cost += (f" (at most ${self.max_cost_usd:.2f} in {self.max_hours:.1f} h: every stage to its "
                     f"timeout{attempts})")
        backend = f"{self.backend} (auto)" if self.auto else self.backend
        return (f"backend={backend}  gpu={where}  processes={self.processes}  timeout={timeout}  "
                f"est. train time {_hours(self.est_hours)}  est. cost {cost}")


def _hours(h: float) -> str:
    if h < 1 / 60:
        return "<1 min"
    return f"~{h * 60:.0f} min" if h < 1 else f"~{h:.1f} h"


def train_tokens(config: dict[str, Any], train_records: int, avg_record_chars: float) -> float:
    """Tokens the train stage goes through: the data's, guessed from its characters, times the epochs."""
    return train_records * avg_record_chars / TOKENS_PER_RECORD_GUESS * float(config.get("num_epochs") or 1)


def compute_spec(config: dict[str, Any], train_records: int, avg_record_chars: float, auto: bool = False,
                 placement: str | None = None, worst: Any = None, *, platform: Any) -> ComputeSpec:
    """`auto`, `placement`: backend=auto chose config's backend.name, for this reason. `worst`: a Modal
    job's worst case (runner/backends/modal_bounds.py, JobBound). `platform`: that backend
    (runner/backends/registry.py), whose properties say what it asks of a job."""
    gpu, backend = config["gpu"], config["backend"]
    count = int(gpu["count"])
    if gpu.get("modal"):
        _, parsed_count = parse_modal_gpu(gpu["modal"])
        if parsed_count != count:
            raise UserError(f"gpu.modal '{gpu['modal']}' asks for {parsed_count} GPUs but gpu.count is {count}")
    elif platform.needs_gpu:
        raise UserError("backend=modal needs a GPU: choose a gpu option (e.g. gpu=a100), not gpu=cpu")
    spec = config["model_spec"]
    tokens = train_tokens(config, train_records, avg_record_chars)
    params = spec["active_params_b"] * 1e9
    flops_per_token = (4 if config.get("adapter") else 6) * params
    throughput = count * gpu["peak_tflops"] * 1e12 * ASSUMED_MFU
    est_hours = tokens * flops_per_token / throughput / 3600
    if gpu.get("modal"):
        est_hours += FIXED_OVERHEAD_H
    price = count * gpu["usd_per_hour"]
    # only Modal bounds a run's time (and so its cost); backend=auto carries Modal's settings when it runs here
    timeout_h = backend.get("timeout_h") if platform.bounds_run_time else None
    return ComputeSpec(
        backend=backend["name"],
        gpu_string=gpu.get("modal"),
        processes=count,
        timeout_h=timeout_h,
        est_hours=est_hours,
        est_cost_usd=est_hours * price,
        max_cost_usd=worst.gpu_cost_usd if worst is not None else None,
        max_hours=worst.hours if worst is not None else None,
        attempts=worst.attempts if worst is not None else 1,
        auto=auto,
        placement=placement,
        worst_case=worst.summary() if worst is not None else None,
    )
