"""Checks that run before anything is dispatched: axolotl keys, combinations, memory fit, platform limits.

Every failure is a UserError with one line that names the problem. The data files are checked in
runner/datacheck.py.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner import memory
from runner.backends.registry import backend_named
from runner.errors import UserError, did_you_mean, unknown
from runner.models import spec
from runner.schema.axolotl_ranges import AXOLOTL_RANGES
from runner.schema.config import CHOICES, RANGES
from runner.schema.ranges import check_ranges, lookup

KEYS_FILE = Path(__file__).with_name("schema") / "axolotl_keys.json"
DATASET_LISTS = ("datasets", "test_datasets", "pretraining_dataset")


@lru_cache(maxsize=1)
def axolotl_keys() -> dict[str, Any]:
    return json.loads(KEYS_FILE.read_text())


@lru_cache(maxsize=None)
def flat_group_keys(group: str) -> tuple[str, ...]:
    """The top-level keys the options of a config group set, when the group writes top-level keys (tracking,
    adapter, recipe: `# @package _global_` without a node of their own); () for anything else."""
    import yaml

    from runner.paths import CONF_DIR

    folder = CONF_DIR / group
    if not folder.is_dir():
        return ()
    keys: set[str] = set()
    for option in folder.glob("*.yaml"):
        node = yaml.safe_load(option.read_text()) or {}
        if group in node:   # the group has a node of its own (gpu:, dataset:, ...): not a flat group
            return ()
        keys.update(k for k in node if k != "defaults")
    return tuple(sorted(keys))


def flat_group_key(group: str, value: dict[str, Any], group_keys: tuple[str, ...]) -> UserError:
    """`tracking.project=x`: the tracking group has no `project`; it sets top-level keys such as wandb_project."""
    import difflib

    nested = str(next(iter(value), ""))

    def closeness(candidate: str) -> float:   # the best match of `nested` with any run of the key's words
        words = candidate.split("_")
        parts = ["_".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)]
        return max(difflib.SequenceMatcher(None, nested, part).ratio() for part in parts)

    best = max(group_keys, key=closeness)
    hint = f"; did you mean {best}=…?" if closeness(best) >= 0.75 else ""
    return UserError(f"{group}.{nested} is not a setting: the {group} group sets top-level keys "
                     f"({', '.join(group_keys)}){hint}")


def check_axolotl_keys(axolotl_config: dict[str, Any]) -> None:
    """Unknown keys, which axolotl itself would drop without a word."""
    keys = axolotl_keys()
    top, plugin_keys = set(keys["top_level"]), keys["plugin_keys"]
    plugins = " ".join(axolotl_config.get("plugins") or [])
    for key in axolotl_config:
        if key in top:
            continue
        if key in plugin_keys:
            if not axolotl_config[key]:
                continue  # a switched-off integration setting needs no plugin
            owners = plugin_keys[key]
            if not any(f"integrations.{owner}" in plugins for owner in owners):
                plugin = keys["plugin_classes"].get(owners[0], f"axolotl.integrations.{owners[0]}")
                raise UserError(f"axolotl key '{key}' needs the {owners[0]} integration: add plugins='[{plugin}]'")
            continue
        if isinstance(axolotl_config[key], dict) and (group_keys := flat_group_keys(key)):
            raise flat_group_key(key, axolotl_config[key], group_keys)
        raise unknown("axolotl key", key, top | set(plugin_keys))
    for key, value in axolotl_config.items():
        check_value_kind(key, value, keys["value_kinds"].get(key))
    entry_keys = set(keys["dataset_entry"])
    for list_key in DATASET_LISTS:
        entries = axolotl_config.get(list_key)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            for key in (entry or {}) if isinstance(entry, dict) else ():
                if key not in entry_keys:
                    raise UserError(f"unknown key '{key}' in {list_key}[{i}]{did_you_mean(key, entry_keys)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    for python_type, name in ((int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def check_value_kind(key: str, value: Any, kinds: list[str] | None) -> None:
    """A value of the wrong type (`lora_r=abc`, `learning_rate=`) fails here, not an hour into a run."""
    if not kinds:
        return
    kind = _kind(value)
    literals = [json.loads(k[1:]) for k in kinds if k.startswith("=")]
    accepted = {k for k in kinds if not k.startswith("=")}
    if "float" in accepted:
        accepted.add("int")
    if kind == "str" and value.strip() == "" and accepted - {"str"}:
        raise UserError(f"axolotl key '{key}' is empty: give it a value")
    if kind in accepted or value in literals:
        return
    expected = sorted(accepted - {"null"}) + [json.dumps(v) for v in literals]
    hint = did_you_mean(value, map(str, literals)) if kind == "str" else ""
    raise UserError(f"axolotl key '{key}' expects {' or '.join(expected)}, got {kind} {value!r}{hint}")


def check_settings(config: dict[str, Any]) -> None:
    """Values in range and choices among the valid ones: the runner's keys, then axolotl's common numbers."""
    for key, choices in CHOICES.items():
        present, value = lookup(config, key)
        if present and value not in choices:
            raise unknown(f"{key} value", value, [c for c in choices if c is not None])
    check_ranges(config, RANGES)
    check_ranges(config, AXOLOTL_RANGES)


def check_combination(config: dict[str, Any], choices: dict[str, str | None]) -> None:
    """Settings that each look fine but cannot work together."""
    gpu, gpu_name = config["gpu"], choices.get("gpu")
    adapter = config.get("adapter")
    stage, offload = memory.zero_stage(config.get("deepspeed"))
    on_cpu = gpu.get("modal") is None

    if adapter == "qlora" and not config.get("load_in_4bit"):
        raise UserError("adapter=qlora needs load_in_4bit=true (adapter=qlora sets it; something turned it off)")
    if config.get("load_in_4bit") and adapter != "qlora":
        raise UserError(f"load_in_4bit=true needs adapter=qlora (got adapter={adapter or 'none'})")
    if not adapter:
        for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"):
            if config.get(key) is True:
                raise UserError(f"{key}=true needs an adapter (LoRA or QLoRA): a full fine-tune has no LoRA layers to fuse")
    if config.get("bf16") is True and config.get("fp16") is True:
        raise UserError("bf16 and fp16 are both true: choose one")
    if on_cpu:
        if config.get("deepspeed"):
            raise UserError(f"deepspeed={choices.get('deepspeed')} needs GPUs: gpu={gpu_name} runs on this CPU (use deepspeed=none)")
        if config.get("load_in_4bit") or config.get("load_in_8bit"):
            raise UserError(f"adapter={choices.get('adapter')} quantises with bitsandbytes, which needs a CUDA GPU: choose a gpu option other than cpu, or adapter=lora")
        for key in ("bf16", "fp16", "tf32", "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"):
            if config.get(key) is True:
                raise UserError(f"{key}=true needs a CUDA GPU: gpu={gpu_name} runs on this CPU")
        if (config.get("eval") or {}).get("engine") == "vllm" and (config.get("stages") or {}).get("eval", True):
            raise UserError(f"eval.engine=vllm needs a CUDA GPU: gpu={gpu_name} runs on this CPU "
                            "(use eval.engine=transformers, or a gpu option)")
    if config.get("bf16") is True and not gpu.get("bf16"):
        raise UserError(f"bf16=true but gpu={gpu_name} has no bf16 support: use fp16=true bf16=false")
    if config.get("attn_implementation") == "flash_attention_2" and not gpu.get("flash_attention"):
        raise UserError(f"attn_implementation=flash_attention_2 but gpu={gpu_name} cannot run flash attention (needs Ampere or newer): use attn_implementation=sdpa")
    if stage in (1, 2, 3) and not offload and int(gpu["count"]) < 2:
        raise UserError(
            f"deepspeed={choices.get('deepspeed')} shards state across GPUs but gpu={gpu_name} has 1: "
            f"use deepspeed=none or zero3_offload, or a multi-GPU option (e.g. {_multi_gpu_hint(gpu_name)})"
        )
    if adapter == "qlora" and stage == 3:
        raise UserError(f"adapter=qlora with deepspeed={choices.get('deepspeed')} is not supported by this runner: use deepspeed=none or zero2")
    if adapter == "lora" and stage == 3 and offload:
        # measured on an H100 with and without axolotl's LoRA kernels (bench/RESULTS.md §13, seventh session)
        raise UserError(f"adapter=lora with deepspeed={choices.get('deepspeed')} fails in axolotl 0.19 with DeepSpeed 0.18.9 "
                        "(bfloat16 activations meet float32 weights): use adapter=none (offload is for full "
                        "fine-tunes too large for the GPUs) or deepspeed=none")


def check_build_target(config: dict[str, Any]) -> None:
    """model=tiny builds its model into base_model: never over a folder holding another model."""
    from runner.models import tiny

    if config["model_spec"].get("build") != "tiny":
        return
    target = Path(str(config["base_model"])).expanduser()
    if not tiny.is_tiny_folder(target):
        raise UserError(f"model=tiny builds its random model into base_model, and {target} holds another model: "
                        "keep base_model at its default, or choose that model's group (e.g. model=llama2)")




def check_base_model(config: dict[str, Any], backend: str, model: str | None = None) -> None:
    """A base_model written as a local path (here or on a Slurm node: the same file system) must be a model
    folder; a hub id (org/name) is fetched by the prepare stage. Built models (model=tiny) are made later."""
    base = str(config.get("base_model") or "")
    if config["model_spec"].get("build") or backend_named(backend).remote or not base.startswith(spec.LOCAL_PATH_PREFIXES):
        return
    spec.check_local_folder(base)
    check_model_spec(config, base, model)


def check_model_spec(config: dict[str, Any], base: str, model: str | None = None) -> None:
    """The model group's architecture figures (memory model, estimates) must be the local model's own: a
    group written for another model (model=llama2 with a 135M folder) would plan its memory and cost."""
    own = spec.read_config(base)
    if own is None:
        return
    wrong = spec.contradictions(config["model_spec"], spec.derive(own))
    if wrong:
        raise UserError(f"base_model={base} is not the model that model={model or '…'} describes: "
                        f"{', '.join(wrong[:3])}{' …' if len(wrong) > 3 else ''}; choose the model group "
                        "for it, or give its figures as model_spec.NAME=VALUE")


def check_model_files(config: dict[str, Any], backend: str) -> list[str]:
    """What base_model's own files say, where they are on this machine (a local folder, or config.json in a
    Hugging Face cache; skipped silently otherwise): an architecture axolotl can train, LoRA targets that
    name its layers, and (a local folder) a tokenizer with EOS, pad and, when the data needs it, a chat
    template. Models the runner builds (model=tiny) are made later. The dry run's lines about it."""
    from runner.models import modules, tokenizer

    base = str(config.get("base_model") or "")
    local = base.startswith(spec.LOCAL_PATH_PREFIXES)
    if not base or config["model_spec"].get("build") or (local and backend_named(backend).remote):
        return []
    own = spec.read_config(base, config.get("revision_of_model"), text=False, cache_dir=config.get("cache_dir"))
    if own is None:
        return []
    modules.check_architecture(base, own, bool(config.get("trust_remote_code")))
    notes = []
    # the module tree costs a child process's torch import the first time a model is seen: built to check
    # named targets, and for the dry run's note on lora_target_linear, not on a real run's start-up path
    if config.get("adapter") in ("lora", "qlora") and (config.get("lora_target_modules") or config.get("dry_run")):
        found = modules.lora_modules(own, config.get("cache_dir"))
        if found is not None:
            if config.get("lora_target_modules"):
                modules.check_lora_targets(base, config["lora_target_modules"], found)
            if config.get("lora_target_linear"):
                notes.append(modules.linear_note(found, own.get("model_type")))
    tokenizer_folder = str(config.get("tokenizer_config") or base)
    if tokenizer_folder.startswith(spec.LOCAL_PATH_PREFIXES):
        shown = f"tokenizer_config={tokenizer_folder}" if config.get("tokenizer_config") else f"base_model={base}"
        notes += tokenizer.check_tokenizer(config, Path(tokenizer_folder).expanduser(), shown)
    return notes


def check_platform_limits(config: dict[str, Any], backend: str) -> None:
    """The chosen platform's own limits, in the plan rather than at launch: on Modal, 24 h a call, 10 retries,
    its GPU types and counts for every stage, positive parallelism, and the job's worst case (every stage
    to its timeout, every attempt) within the sweep function that runs it. A sweep's jobs together:
    runner.backends.check_sweep."""
    backend_named(backend).check_limits(config)


TRACKER_PACKAGES = {"use_mlflow": ("mlflow", "tracking=mlflow", "mlflow-skinny"), "wandb_project": ("wandb", "tracking=wandb", "wandb")}


def check_tracker_installed(config: dict[str, Any], backend: str) -> None:
    """A tracker the job logs to must be importable where the stages run (Modal's image has both)."""
    import importlib.util

    if backend_named(backend).remote:
        return
    for key, (module, choice, package) in TRACKER_PACKAGES.items():
        if config.get(key) and importlib.util.find_spec(module) is None:
            raise UserError(f"{choice} needs the {module} package on this machine: pip install {package} (or tracking=none)")


def _multi_gpu_hint(gpu_name: str | None) -> str:
    """The multi-GPU option of the same card where the gpu group has one."""
    return {"a100": "a100x2", "h100": "h100x2", "h200": "h200x8"}.get(gpu_name or "", "h100x2")


def check_memory(config: dict[str, Any], choices: dict[str, str | None], longest_record_chars: int | None = None) -> None:
    """Reject a model that cannot fit the chosen GPUs with the chosen adapter."""
    est = memory.estimate(config, longest_record_chars=longest_record_chars)
    limit = config["gpu"]["memory_gib"]
    if est.total <= limit:
        return
    hint = []
    if config.get("gradient_checkpointing") is not True:
        with_ckpt = memory.estimate(config, gradient_checkpointing=True, longest_record_chars=longest_record_chars)
        if with_ckpt.total <= limit:
            hint.append("gradient_checkpointing=true")
    if config.get("adapter") != "qlora":
        hint.append("adapter=qlora")
    hint.append("a larger gpu option")
    if config.get("adapter") is None:
        hint.append("deepspeed=zero3 with more GPUs")
    raise UserError(
        f"model={choices.get('model')} with adapter={choices.get('adapter')} needs ~{est.total:.0f} GiB per GPU "
        f"but gpu={choices.get('gpu')} has {limit:g} GiB ({est.breakdown()}): try {', or '.join(hint)}"
    )
