"""Installed packages a stage's job does not use, kept out of its start-up.

transformers, accelerate, peft and trl import an optional package at their own import whenever it is
installed (`importlib.util.find_spec(name)` says so), whether the job uses it or not. In the train stage
of the default LoRA job that is scikit-learn (with SciPy: for assisted generation), torchao (for models
quantized with it), DeepSpeed (accelerate's `unwrap_model`) and, through DeepSpeed, MLflow: ~1 200 of the
~6 500 modules a train process loads, 3.7 s of its 20 s start-up on the H100 machine's file system
(bench/RESULTS.md §13). A stage started through runner.stages.boot, and the eval stage, hide the ones its
config does not need from that availability check: `find_spec` answers None for them, as if they were not
installed. An explicit `import` of a hidden package still works (importlib's own machinery does not ask
`importlib.util.find_spec`), so code that needs one without asking first loses nothing but time.

RUNNER_IMPORT_ALL=1 turns this off.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable

ENV_OFF = "RUNNER_IMPORT_ALL"


def _truthy(config: dict[str, Any], *keys: str) -> bool:
    return any(config.get(key) for key in keys)


def _needs_sklearn(config: dict[str, Any]) -> bool:
    # axolotl's benchmark and generation-metric callbacks score with `evaluate`, whose metrics use it
    return _truthy(config, "do_bench_eval", "bench_dataset", "eval_causal_lm_metrics")


def _needs_torchao(config: dict[str, Any]) -> bool:
    optimizer = str(config.get("optimizer") or "")
    return (_truthy(config, "fp8", "fp8_config", "qat", "quantization")
            or config.get("attn_implementation") == "fp8"
            or any(part in optimizer for part in ("ao_", "torchao", "4bit", "8bit", "fp8"))
            or _quant_method(config) == "torchao")


def _needs_deepspeed(config: dict[str, Any]) -> bool:
    return _truthy(config, "deepspeed")


def _needs_mlflow(config: dict[str, Any]) -> bool:
    report_to = config.get("report_to") or []
    return (_truthy(config, "use_mlflow", "mlflow_tracking_uri", "mlflow_experiment_name")
            or "mlflow" in (report_to if isinstance(report_to, list) else [report_to])
            or report_to == "all")


# package (import name) → does this config need it
NEEDED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "sklearn": _needs_sklearn,
    "torchao": _needs_torchao,
    "deepspeed": _needs_deepspeed,
    "mlflow": _needs_mlflow,
}


def _quant_method(config: dict[str, Any]) -> str | None:
    """The base model's own `quantization_config.quant_method` (a pre-quantized checkpoint), from its
    config.json in a local folder or the hub cache; None when there is none or it cannot be read here."""
    from runner.models.spec import read_config

    own = read_config(str(config.get("base_model") or ""), config.get("revision_of_model"), text=False) or {}
    quantization = own.get("quantization_config")
    return quantization.get("quant_method") if isinstance(quantization, dict) else None


def unused(config: dict[str, Any]) -> list[str]:
    """The optional packages this config does not need."""
    return [name for name, needed in NEEDED.items() if not needed(config)]


def hide(names: list[str]) -> list[str]:
    """Make `importlib.util.find_spec` answer None for these top-level packages in this process; returns
    what it hid (nothing with RUNNER_IMPORT_ALL=1, or when hidden already)."""
    if os.environ.get(ENV_OFF, "").strip() not in ("", "0") or not names:
        return []
    original = importlib.util.find_spec
    if getattr(original, "hidden", None) is not None:
        return []
    hidden = frozenset(names)

    def find_spec(name: str, package: str | None = None):
        if name.partition(".")[0] in hidden:
            return None
        return original(name, package)

    find_spec.hidden = hidden
    find_spec.__doc__ = original.__doc__
    importlib.util.find_spec = find_spec
    return sorted(hidden)


def hide_unused(config: dict[str, Any]) -> list[str]:
    return hide(unused(config))
