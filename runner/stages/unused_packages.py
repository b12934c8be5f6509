"""Installed packages a stage's job does not use, kept out of its start-up.

transformers, accelerate, peft and trl import an optional package at their own import whenever it is
installed (`importlib.util.find_spec(name)` says so), whether the job uses it or not. In the train stage
of the default LoRA job that is scikit-learn (with SciPy: for assisted generation), torchao (for models
quantized with it), DeepSpeed (accelerate's `unwrap_model`) and, through DeepSpeed, MLflow; W&B (trl asks
at import) where the job does not track with it; bitsandbytes (peft asks) outside QLoRA and 8-bit: ~1 400 of the
~6 500 modules a train process loaded, 3.7 s of its 20 s start-up on the H100 machine
(bench/RESULTS.md §13). A stage started through runner.stages.boot, and the eval stage, hide the ones its
config does not need from that availability check: `find_spec` answers None for them, as if they were not
installed. An explicit `import` of a hidden package still works (importlib's own machinery does not ask
`importlib.util.find_spec`), so code that needs one without asking first loses nothing but time.

Two more are imported explicitly (`importlib.import_module`), not after asking: flash-linear-attention (`fla`,
which transformers' kernel decorators import for every model, 370 modules, 0.8 s of the H100 train stage's
start-up) and torchvision (transformers' image utilities, 0.2 s). For a job that cannot use them (a model
whose architecture has no linear-attention layers; a text-only model) they are blocked: importing them
raises ImportError, exactly as if they were not installed, which every caller handles (each falls back to
its torch code).

SciPy (490 modules) is blocked too where scikit-learn is not needed: transformers asks before importing it and
evaluate imports it in a `try`; and torchao where the job does not use it: axolotl's patch of its optimizer
states imports it in a `try` before every model load (100 modules, 0.3 s), its other imports are in the
code paths of the settings that need it. W&B and bitsandbytes cannot be blocked (axolotl imports them at the top of
modules every job loads) but are used only by the jobs above: elsewhere, hidden as the others, their import
gives a module that loads on first use (`defer`) — for bitsandbytes, whose ops wrap kernels in
`torch.compile`, that also keeps torch's dynamo and NetworkX out of every LoRA job.

RUNNER_IMPORT_ALL=1 turns this off.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
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
            or any(part in optimizer for part in ("ao_", "torchao", "4bit", "8bit", "fp8", "sinkgd"))
            or _quant_method(config) == "torchao")


def _needs_deepspeed(config: dict[str, Any]) -> bool:
    return _truthy(config, "deepspeed")


def _reports_to(config: dict[str, Any], name: str) -> bool:
    report_to = config.get("report_to") or []
    return name in (report_to if isinstance(report_to, list) else [report_to]) or report_to == "all"


def _needs_wandb(config: dict[str, Any]) -> bool:
    # axolotl turns W&B on from wandb_project (tracking=wandb); trl's trainers ask for it at import (237 modules)
    return _truthy(config, "use_wandb", "wandb_project") or _reports_to(config, "wandb")


def _needs_mlflow(config: dict[str, Any]) -> bool:
    return (_truthy(config, "use_mlflow", "mlflow_tracking_uri", "mlflow_experiment_name")
            or _reports_to(config, "mlflow"))


def _needs_bitsandbytes(config: dict[str, Any]) -> bool:
    # QLoRA and 8-bit loading quantize with it; its 8-bit and paged optimizers are its own
    optimizer = str(config.get("optimizer") or "")
    return (config.get("adapter") == "qlora" or _truthy(config, "load_in_4bit", "load_in_8bit", "gptq")
            or any(part in optimizer for part in ("8bit", "bnb", "paged", "4bit"))
            or _quant_method(config) == "bitsandbytes")


# transformers' and axolotl's architectures with linear-attention layers (fla's kernels; transformers 5.16,
# axolotl 0.19: the modeling files that import it)
FLA_MODEL_TYPES = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_moe", "qwen4_exp", "olmo_hybrid", "glm5_next",
                             "kimi_linear", "bailing_hybrid", "bailing_moe_v3"})


def _needs_fla(config: dict[str, Any]) -> bool:
    model_type = _model_config(config).get("model_type")
    return model_type is None or model_type in FLA_MODEL_TYPES   # not known here: keep it


def _needs_torchvision(config: dict[str, Any]) -> bool:
    own = _model_config(config)
    return (_truthy(config, "processor_type", "is_multimodal", "image_size")
            or any(key in own for key in ("vision_config", "image_token_id", "image_token_index")))


# package (import name) → does this config need it
NEEDED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "sklearn": _needs_sklearn,
    "torchao": _needs_torchao,
    "deepspeed": _needs_deepspeed,
    "mlflow": _needs_mlflow,
    "wandb": _needs_wandb,
    "bitsandbytes": _needs_bitsandbytes,
}
# imported without asking first: blocked (ImportError) where the config cannot use them
BLOCKED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "fla": _needs_fla,
    "torchvision": _needs_torchvision,
    "scipy": _needs_sklearn,   # 490 modules; transformers asks first, evaluate's `from scipy.stats` is in a try
    "torchao": _needs_torchao,   # axolotl's optimizer-state patch imports it in a try: 100 modules
}
# of NEEDED's, imported by name at the top of a module whatever the config (axolotl's callbacks: `import wandb`;
# its adapter loader: `import bitsandbytes as bnb`): where unused, loaded on first use, so never
DEFERRED = frozenset({"wandb", "bitsandbytes"})


def _model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The base model's own config.json (the whole of it: a multimodal one's vision part too), or {}."""
    from runner.models.spec import read_config

    return read_config(str(config.get("base_model") or ""), config.get("revision_of_model"), text=False) or {}


def _quant_method(config: dict[str, Any]) -> str | None:
    """The base model's own `quantization_config.quant_method` (a pre-quantized checkpoint), from its
    config.json in a local folder or the hub cache; None when there is none or it cannot be read here."""
    quantization = _model_config(config).get("quantization_config")
    return quantization.get("quant_method") if isinstance(quantization, dict) else None


def _off() -> bool:
    return os.environ.get(ENV_OFF, "").strip() not in ("", "0")


def unused(config: dict[str, Any]) -> list[str]:
    """The optional packages this config does not need."""
    return [name for name, needed in NEEDED.items() if not needed(config)]


def hide(names: list[str]) -> list[str]:
    """Make `importlib.util.find_spec` answer None for these top-level packages in this process; returns
    what it hid now (nothing with RUNNER_IMPORT_ALL=1; not those hidden already)."""
    if _off() or not names:
        return []
    current = importlib.util.find_spec
    hidden = getattr(current, "hidden", None)
    if hidden is not None:   # patched already: add to its set
        new = sorted(set(names) - hidden)
        hidden.update(new)
        return new
    original = current

    def find_spec(name: str, package: str | None = None):
        if name.partition(".")[0] in find_spec.hidden:
            return None
        return original(name, package)

    find_spec.hidden = set(names)
    find_spec.__doc__ = original.__doc__
    importlib.util.find_spec = find_spec
    return sorted(find_spec.hidden)


class _Blocked:
    """A meta path finder that answers ImportError for the blocked top-level packages, as if not installed."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (not used by this job: {ENV_OFF}=1 imports it)",
                                      name=name)
        return None


def block(names: list[str]) -> list[str]:
    """Make `import NAME` fail in this process for these top-level packages (and hide them from find_spec);
    returns what it blocked (nothing with RUNNER_IMPORT_ALL=1, or when some are imported already)."""
    if _off() or not names:
        return []
    names = [n for n in names if n not in sys.modules]
    if not names or any(isinstance(f, _Blocked) for f in sys.meta_path):
        return []
    hide(names)   # availability checks see None (the finder's ImportError is for imports)
    sys.meta_path.insert(0, _Blocked(frozenset(names)))
    return sorted(names)


class _Deferred(types.ModuleType):
    """A module whose code runs on the first use of a name it defines. Its own attributes (`__file__`,
    `__spec__`, `__path__`, …) are set as Python sets them, so tools that walk every loaded module
    (`inspect.getmodule`, which torch's op registration and pydantic call) do not load it, as
    importlib.util.LazyLoader's modules would."""

    def __getattr__(self, name: str):
        self.__class__ = types.ModuleType   # one load, then an ordinary module
        spec = self.__spec__
        try:
            spec.loader.exec_module(self)
        except BaseException:
            sys.modules.pop(spec.name, None)
            raise
        return getattr(self, name)


def defer(names: list[str]) -> list[str]:
    """Make `import NAME` in this process give a module whose code runs when a name in it is first used;
    returns what it deferred (nothing with RUNNER_IMPORT_ALL=1; not those imported already)."""
    import importlib.machinery

    if _off():
        return []
    deferred = []
    for name in names:
        if name in sys.modules or (spec := importlib.machinery.PathFinder.find_spec(name)) is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)   # __name__, __file__, __path__, … as an import sets them
        module.__class__ = _Deferred
        sys.modules[name] = module
        deferred.append(name)
    return deferred


def hide_unused(config: dict[str, Any]) -> list[str]:
    blocked = [name for name, needed in BLOCKED.items() if not needed(config)]
    hidden = unused(config)
    return sorted({*hide(hidden + blocked), *block(blocked), *defer([n for n in hidden if n in DEFERRED])})
