"""The `gpu` node: the hardware a job asks for (conf/gpu/*.yaml). Training settings are `recipe`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from runner.schema.ranges import Range, positive


@dataclass
class GpuSpec:
    modal: Optional[str] = MISSING       # Modal's GPU string ("A100-80GB:4"); null: this machine's CPU
    count: int = 1                       # GPUs, and so training processes (one per GPU)
    memory_gib: float = MISSING          # per GPU (RAM for the CPU)
    bf16: bool = False                   # the card computes in bfloat16 (Ampere and newer)
    flash_attention: bool = False        # FlashAttention kernels run on it (Ampere and newer)
    peak_tflops: float = MISSING         # dense 16-bit, per GPU: time and MFU estimates
    usd_per_hour: float = 0.0            # per GPU, Modal on-demand: cost estimates (conf/gpu_prices.yaml)
    # Modal: GPU strings to run on instead, in order, when `modal`'s cards are not available (as many GPUs;
    # gpu=auto fills it with the options that also fit and meet the deadline). The run records what it got.
    fallbacks: list[str] = field(default_factory=list)
    # gpu=auto only (conf/gpu/auto.yaml, runner/gpu_choice.py): the options to choose from (null: every
    # option with a Modal GPU), and $/h per GPU by Modal GPU type over conf/gpu_prices.yaml
    auto: bool = False
    candidates: Optional[list[str]] = None
    prices: dict[str, float] = field(default_factory=dict)


RANGES = {
    "gpu.count": Range(1, 8, integer=True),
    "gpu.memory_gib": positive(),
    "gpu.peak_tflops": positive(),
    "gpu.usd_per_hour": Range(0),
    "deadline_h": positive(allow=(None,)),
    "budget_usd": positive(allow=(None,)),
}
