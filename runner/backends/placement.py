"""backend=auto: run a job where its GPUs are. gpu=cpu, or a machine that has the cards the job asks for,
runs here (the local backend); anything else goes to Modal.

"Has the cards" means at least `gpu.count` visible GPUs (CUDA_VISIBLE_DEVICES is honoured) of the asked
family (A100, H100, L4, ...) with at least 90 % of the option's memory, so an A100 40GB does not stand in
for `gpu=a100` (80 GB). The GPUs are read from `nvidia-smi` (no torch import: the dry run stays fast);
a machine without it has none.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from runner.compute import parse_modal_gpu

NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
MEMORY_SLACK = 0.9   # nvidia-smi reports a little less than the datasheet (143 771 MiB on a "141 GB" H200)


@dataclass(frozen=True)
class LocalGpu:
    index: int
    name: str           # as nvidia-smi prints it, e.g. "NVIDIA A100-SXM4-80GB"
    memory_gib: float


@dataclass(frozen=True)
class Placement:
    backend: str                # local | modal
    auto: bool                  # chosen by backend=auto
    reason: str | None = None   # why, when auto chose


_seen: dict[tuple[str | None, str | None], tuple[LocalGpu, ...]] = {}


def local_gpus() -> tuple[LocalGpu, ...]:
    """This machine's visible NVIDIA GPUs (read once per PATH and CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    key = (os.environ.get("PATH"), visible)
    if key not in _seen:
        _seen[key] = _query(visible)
    return _seen[key]


def _query(visible: str | None) -> tuple[LocalGpu, ...]:
    if visible is not None and visible.strip() in ("", "-1"):
        return ()
    try:
        out = subprocess.run(NVIDIA_SMI, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if out.returncode != 0:
        return ()
    gpus = []
    for line in out.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 3 and fields[0].isdigit():
            try:
                gpus.append(LocalGpu(int(fields[0]), fields[1], float(fields[2]) / 1024))
            except ValueError:
                continue
    if visible:
        wanted = [v.strip() for v in visible.split(",")]
        gpus = [g for g in gpus if str(g.index) in wanted]
    return tuple(gpus)


def card_matches(gpu: LocalGpu, modal_name: str, memory_gib: float) -> bool:
    """Is this local card the one the gpu option names? ("A100-80GB" → an A100 with ~80 GB)."""
    family = modal_name.split("-")[0]
    # "L4" must not match "L40S", nor "H200" match "GH200"
    if not re.search(rf"(?<![A-Za-z0-9]){re.escape(family)}(?![A-Za-z0-9])", gpu.name, re.IGNORECASE):
        return False
    return gpu.memory_gib >= MEMORY_SLACK * float(memory_gib)


def modal_card(gpus: tuple[LocalGpu, ...], asked: list[str]) -> str | None:
    """Which of the Modal GPU strings a stage asked for (its fallback list) these cards are: the first that
    matches ('A100-80GB:2'); None if none does (or no GPU is visible)."""
    for option in asked:
        card, count = parse_modal_gpu(option)
        size = re.search(r"-(\d+)GB$", card)   # A100-80GB and A100-40GB differ by memory alone
        if sum(card_matches(g, card, int(size.group(1)) if size else 0) for g in gpus) >= count:
            return option
    return None


def describe(gpus: tuple[LocalGpu, ...] | list[LocalGpu]) -> str:
    if not gpus:
        return "no GPU"
    names: dict[str, int] = {}
    for gpu in gpus:
        names[gpu.name] = names.get(gpu.name, 0) + 1
    return ", ".join(f"{count}× {name}" for name, count in names.items())


def place(config: dict[str, Any]) -> Placement:
    """Where this job runs: backend.name as set, or for `auto`, here if this machine can run it, else Modal."""
    from runner.backends.registry import BACKENDS

    name = config["backend"]["name"]
    if name in BACKENDS:   # set by the user; otherwise `auto`
        return Placement(name, auto=False)
    gpu = config["gpu"]
    if not gpu.get("modal"):
        return Placement("local", True, "gpu=cpu runs on this machine")
    card, count = parse_modal_gpu(str(gpu["modal"]))
    gpus = local_gpus()
    matching = [g for g in gpus if card_matches(g, card, gpu.get("memory_gib") or 0)]
    wanted = f"{count}× {card}"
    if len(matching) >= count:
        return Placement("local", True, f"this machine has the {wanted} the job asks for ({describe(matching)})")
    return Placement("modal", True, f"the job asks for {wanted} and this machine has {describe(gpus)}")
