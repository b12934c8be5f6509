"""gpu=auto's speed model: training tokens/s of a job on a gpu option, from this repo's measurements where
the card (and kind of training) was measured, else scaled from the nearest measured card (conf/gpu_speed.yaml).

A measured card's tokens/s carries over to another model by the FLOPs each token costs (4·N for LoRA and
QLoRA, which compute no weight gradients, 6·N for a full fine-tune, plus 12·L·s·d of attention; N the active
parameters, s the row length), as the benchmarks' MFU counts them. A card not measured is scaled from the
measured card nearest in memory bandwidth: by dense bf16 peak for models whose matmuls dominate, by memory
bandwidth for small ones. A kind of training measured on one card only carries its ratio to LoRA over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.compute import parse_modal_gpu
from runner.gpu_tables import speed


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float     # the whole option's, all its GPUs
    source: str             # "measured" (this card and kind were benchmarked) or "scaled"
    basis: str              # where the figure comes from, in words


def kind(config: dict[str, Any]) -> str:
    """lora, qlora or full: what the measurements are keyed by."""
    if config.get("load_in_4bit"):
        return "qlora"
    return "lora" if config.get("adapter") else "full"


def flops_per_token(kind_: str, active_params_b: float, layers: int, width: int, row: int) -> float:
    return (6 if kind_ == "full" else 4) * active_params_b * 1e9 + 12 * layers * row * width


def _per_card(gpu_type: str, kind_: str, peaks: dict[str, float], params_b: float) -> tuple[float, str, str]:
    """One GPU's tokens/s on the measured model: (figure, measured | scaled, basis)."""
    table, figures = speed()["tokens_per_s"], speed()
    if kind_ in table.get(gpu_type, {}):
        return float(table[gpu_type][kind_]), "measured", f"{gpu_type} {kind_} measured"
    bandwidth = figures["memory_tbs"]
    # the measured card nearest in memory bandwidth (ties: the first listed)
    reference = min(table, key=lambda t: abs(math.log(bandwidth[t] / bandwidth[gpu_type])))
    if kind_ in table[reference]:
        figure, how = float(table[reference][kind_]), f"{reference} {kind_}"
    else:   # the kind measured elsewhere: its ratio to LoRA there
        other = next(t for t in table if kind_ in table[t] and "lora" in table[t])
        figure = float(table[reference]["lora"]) * table[other][kind_] / table[other]["lora"]
        how = f"{reference} lora × {other}'s {kind_}/lora"
    if gpu_type != reference:
        if params_b < figures["small_model_b"]:
            figure *= bandwidth[gpu_type] / bandwidth[reference]
            how += f" × memory bandwidth {bandwidth[gpu_type]:g}/{bandwidth[reference]:g} TB/s"
        else:
            figure *= peaks[gpu_type] / peaks[reference]
            how += f" × bf16 peak {peaks[gpu_type]:g}/{peaks[reference]:g} TFLOP/s"
    return figure, "scaled", how


def estimate(config: dict[str, Any], gpu: dict[str, Any], row: int, peaks: dict[str, float]) -> Speed:
    """tokens/s of the job `config` on the gpu option `gpu` (its node), rows of `row` tokens.
    `peaks`: dense bf16 TFLOP/s per Modal GPU type (the gpu options')."""
    figures, spec = speed(), config["model_spec"]
    gpu_type, count = parse_modal_gpu(str(gpu["modal"]))
    kind_ = kind(config)
    per_card, source, basis = _per_card(gpu_type, kind_, peaks, float(spec["active_params_b"]))
    ref = figures["measured_on"]
    model_ratio = (flops_per_token(kind_, ref["active_params_b"], ref["num_layers"], ref["hidden_size"], ref["sequence_len"])
                   / flops_per_token(kind_, float(spec["active_params_b"]), int(spec["num_layers"]),
                                     int(spec["hidden_size"]), row))
    cards = count * (figures["multi_gpu_efficiency"] if count > 1 else 1.0)
    if count > 1:
        basis += f" × {count} GPUs at {figures['multi_gpu_efficiency']:g}"
    return Speed(per_card * model_ratio * cards, source, basis)
