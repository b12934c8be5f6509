"""What a model's config.json says it is, before anything runs: an architecture transformers can build as a
causal LM (axolotl trains nothing else), and the module names LoRA can target in it.

The architecture check reads transformers' auto-class tables from their source (no torch import: the dry
run stays light). The module names come from building the model on the meta device (no weights; a few
seconds for the torch import, then milliseconds a model), kept per config.json in this process and on disk
under `cache_dir/modules/`, so a repeated dry run or thousands of compositions pay it once.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from functools import lru_cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

from runner.errors import UserError


@lru_cache(maxsize=1)
def _auto_tables() -> dict[str, dict[str, Any]]:
    """transformers' `*_MAPPING_NAMES` tables (model_type → class name), read from modeling_auto.py."""
    found = util.find_spec("transformers")
    if found is None or not found.submodule_search_locations:
        return {}
    source = Path(next(iter(found.submodule_search_locations))) / "models" / "auto" / "modeling_auto.py"
    tables: dict[str, dict[str, Any]] = {}
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.endswith("_MAPPING_NAMES") and isinstance(node.value, ast.Call) and node.value.args:
            try:
                tables[node.targets[0].id] = dict(ast.literal_eval(node.value.args[0]))
            except (ValueError, TypeError, SyntaxError):   # a table built from others: not one we need
                continue
    return tables


TRAINABLE = ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES")


def check_architecture(base: str, config: dict[str, Any], trust_remote_code: bool = False) -> None:
    """A model axolotl can train: its model_type has a causal-LM (or image-text-to-text) class in the
    installed transformers, or it ships its own code and trust_remote_code=true lets it run."""
    tables = _auto_tables()
    if not tables:   # transformers is not installed here (a remote backend's image has it): nothing to compare
        return
    model_type = config.get("model_type")
    architecture = ", ".join(config.get("architectures") or []) or "no architectures"
    if trust_remote_code and "AutoModelForCausalLM" in (config.get("auto_map") or {}):
        return
    if any(model_type in tables.get(name, {}) for name in TRAINABLE):
        return
    version = metadata.version("transformers")
    if not any(model_type in table for table in tables.values()):
        remote = " or trust_remote_code=true (it ships its own code)" if config.get("auto_map") else ""
        raise UserError(f"base_model={base} has model_type '{model_type}' ({architecture}), which transformers "
                        f"{version} does not know: upgrade transformers{remote}, or choose another base_model")
    raise UserError(f"base_model={base} is a {model_type} ({architecture}), which transformers {version} cannot "
                    "load as a causal LM (AutoModelForCausalLM): axolotl fine-tunes decoder language models; "
                    "choose one as base_model")


def lora_modules(config: dict[str, Any], cache_dir: str | Path | None = None) -> dict[str, list[str]] | None:
    """{"linear": names of the linear layers, "targetable": those and the embeddings} of the model a
    config.json describes, as full module names (model.layers.0.self_attn.q_proj), built on the meta device;
    None when transformers cannot build it here (custom code, not installed)."""
    text = json.dumps(config, sort_keys=True)
    key = hashlib.sha256(f"{text}\n{_version('transformers')}".encode()).hexdigest()[:24]
    stored = Path(cache_dir) / "modules" / f"{key}.json" if cache_dir else None
    if stored is not None and stored.is_file():
        try:
            return json.loads(stored.read_text()) or None   # {}: not buildable here, known from last time
        except ValueError:
            pass
    found = _built_modules(text)
    if stored is not None:
        from runner.records import write_text

        try:
            write_text(stored, json.dumps(found or {}))
        except OSError:   # a read-only cache: the check works without keeping its answer
            pass
    return found


@lru_cache(maxsize=32)
def _built_modules(config_text: str) -> dict[str, list[str]] | None:
    """Built in a child process: torch stays out of the runner's (its import is seconds, and noisy)."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-m", "runner.models.modules"], input=config_text, text=True,
                              capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()   # the answer is the last line, whatever was printed before it
    return json.loads(lines[-1]) if done.returncode == 0 and lines else None


def build_on_meta(config: dict[str, Any]) -> dict[str, list[str]] | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        return None
    try:
        model_config = AutoConfig.for_model(**config)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_config)
    except Exception:  # noqa: BLE001 - a model transformers cannot build here is checked where it runs
        return None
    linear, targetable = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__:
            linear.append(name)
            targetable.append(name)
        elif isinstance(module, torch.nn.Embedding):
            targetable.append(name)
    return {"linear": linear, "targetable": targetable}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def short_names(names: list[str]) -> list[str]:
    """q_proj, k_proj, ... in the order the model has them: the last part of each full module name."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in names))


def matches(target: str, name: str) -> bool:
    """PEFT's rule for one entry of a target list: the full name, or its last parts."""
    return name == target or name.endswith("." + target)


def check_lora_targets(base: str, targets: Any, modules: dict[str, list[str]]) -> None:
    """Every lora_target_modules entry names a layer of the model (a single string is a regular expression
    over the full names, as PEFT reads it)."""
    names = modules["targetable"]
    there = ", ".join(short_names(modules["linear"]))
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, name) for name in names):
            raise UserError(f"lora_target_modules='{targets}' matches no module of base_model={base} "
                            f"(its linear layers: {there})")
        return
    missing = [str(t) for t in targets or [] if not any(matches(str(t), name) for name in names)]
    if missing:
        from runner.errors import did_you_mean

        hint = did_you_mean(missing[0], short_names(names))
        raise UserError(f"lora_target_modules: {', '.join(missing)} matches no module of base_model={base}{hint} "
                        f"(its linear layers: {there})")


def linear_note(modules: dict[str, list[str]], model_type: str | None) -> str:
    """What lora_target_linear covers, in the words of the dry run (axolotl leaves the output head out)."""
    output_embedding = "embed_out" if model_type == "gpt_neox" else "lm_head"
    covered = [name for name in short_names(modules["linear"]) if name != output_embedding]
    return f"lora_target_linear covers {', '.join(covered)} ({len(covered)} kinds of linear layer; not {output_embedding})"


if __name__ == "__main__":   # config.json's text on stdin, the module names as JSON on stdout
    import sys

    found = build_on_meta(json.loads(sys.stdin.read()))
    if found is None:
        sys.exit(1)
    print(json.dumps(found))
