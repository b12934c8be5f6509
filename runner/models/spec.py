"""A model's architecture figures (the `model_spec` node: memory model, estimates, MFU) read off its own
config.json, without its weights: the decoder's widths and counts, and the parameters they make.

The parameter count is computed from the figures for the decoder layout that Llama, Mistral, Mixtral,
Qwen2/3, Gemma, Phi-3 and SmolLM share (attention q/k/v/o with grouped K/V heads, a gated MLP, or
`num_local_experts` of them behind a router, two norms a layer, embeddings tied or not) and for GPT-NeoX
(Pythia); tests/test_model_spec.py checks it against transformers' own models built on the meta device.
Other layouts give None for the counts (the group's figures are then used as given).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner.errors import UserError

# figures that must equal the model's own, and the config.json keys they are read from (first found)
WIDTHS = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner"),
    "vocab_size": ("vocab_size",),
    "num_heads": ("num_attention_heads", "n_head"),
    "num_kv_heads": ("num_key_value_heads",),
}
PARAMS_TOLERANCE = 0.03   # the group's rounded billions against the count from config.json


def read_config(base_model: str, revision: str | None = None, text: bool = True,
                cache_dir: str | None = None) -> dict[str, Any] | None:
    """The model's config.json from a local folder or the Hugging Face cache (the default one, or the runner's
    under `cache_dir`, where the prepare stage downloads; never the network); with `text`, its text config
    for a multimodal one. None when it is not here."""
    path = config_file(base_model, revision, cache_dir)
    if path is None:
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return config.get("text_config") if text and isinstance(config.get("text_config"), dict) else config


def config_file(base_model: str, revision: str | None = None, cache_dir: str | None = None) -> Path | None:
    """Where base_model's config.json is on this machine, if it is."""
    path = Path(base_model).expanduser() / "config.json"
    if path.is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for cache in (None, *([str(Path(cache_dir) / "hub")] if cache_dir else [])):
        try:
            cached = try_to_load_from_cache(base_model, "config.json", cache_dir=cache, revision=revision)
        except Exception:  # noqa: BLE001 - not a hub id: nothing to read here
            return None
        if isinstance(cached, str):
            return Path(cached)
    return None


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), None)


def _widths(config: dict[str, Any]) -> dict[str, Any]:
    spec = {name: _first(config, keys) for name, keys in WIDTHS.items()}
    if spec["num_kv_heads"] is None:
        spec["num_kv_heads"] = spec["num_heads"]
    if spec["intermediate_size"] is None and spec["hidden_size"]:
        spec["intermediate_size"] = 4 * int(spec["hidden_size"])
    return spec


def derive(config: dict[str, Any]) -> dict[str, Any]:
    """model_spec figures from a config.json's contents (None where it does not say)."""
    spec = _widths(config)
    spec["num_experts"] = int(config.get("num_local_experts") or config.get("num_experts") or 1)
    total, active = parameter_count(config)
    spec["params_b"] = round(total / 1e9, 4) if total else None
    spec["active_params_b"] = round(active / 1e9, 4) if active else None
    return spec


def parameter_count(config: dict[str, Any]) -> tuple[int | None, int | None]:
    """(all parameters, those one token uses) of the model a config.json describes; (None, None) for a
    layout not counted here."""
    spec = _widths(config)
    experts = int(config.get("num_local_experts") or config.get("num_experts") or 1)
    if any(spec[k] is None for k in WIDTHS):
        return None, None
    hidden, layers, inner, vocab = (int(spec[k]) for k in ("hidden_size", "num_layers", "intermediate_size", "vocab_size"))
    heads, kv_heads = int(spec["num_heads"]), int(spec["num_kv_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    # transformers' own default where config.json does not say: tied for Gemma, not for the others here
    tied = bool(config.get("tie_word_embeddings", str(config.get("model_type")).startswith("gemma")))
    embeddings = vocab * hidden * (1 if tied else 2)
    if config.get("model_type") == "gpt_neox":   # fused qkv and MLP with biases, two LayerNorms a layer
        layer = 4 * hidden * hidden + 4 * hidden + 2 * hidden * inner + inner + hidden + 4 * hidden
        total = embeddings + layers * layer + 2 * hidden
        return total, total
    if config.get("model_type") not in LLAMA_LAYOUT:
        return None, None
    bias = bool(config.get("attention_bias") or config.get("model_type") in ("qwen2", "qwen2_moe"))
    attention = hidden * head_dim * (heads + 2 * kv_heads) + heads * head_dim * hidden
    if bias:
        attention += head_dim * (heads + 2 * kv_heads)
    if config.get("model_type") == "qwen3":   # q and k norms over the head dimension
        attention += 2 * head_dim
    mlp = 3 * hidden * inner
    router = hidden * experts if experts > 1 else 0
    norms = 2 * hidden
    total = embeddings + layers * (attention + experts * mlp + router + norms) + hidden
    per_token = int(config.get("num_experts_per_tok") or 1) if experts > 1 else 1
    active = embeddings + layers * (attention + per_token * mlp + router + norms) + hidden
    return total, active


# model types whose decoder has the Llama layout counted above
LLAMA_LAYOUT = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "phi3")


def contradictions(given: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """`name given X, config.json Y` for each of the group's figures that is not the model's own."""
    found = [f"{name} {given[name]} (config.json: {derived[name]})" for name in (*WIDTHS, "num_experts")
             if given.get(name) is not None and derived.get(name) is not None and int(given[name]) != int(derived[name])]
    for name in ("params_b", "active_params_b"):
        if given.get(name) and derived.get(name) and abs(float(given[name]) / derived[name] - 1) > PARAMS_TOLERANCE:
            found.append(f"{name} {given[name]} (config.json: {derived[name]})")
    return found


REQUIRED = (*WIDTHS, "params_b", "active_params_b")
LOCAL_PATH_PREFIXES = ("/", "~", "./", "../")   # a base_model written so is a folder here, not a hub id


def check_local_folder(base: str) -> None:
    """A base_model written as a local path is a Hugging Face model folder."""
    folder = Path(base).expanduser()
    if not folder.is_dir():
        raise UserError(f"base_model={base}: no such folder (a local model folder, or a hub id such as "
                        "meta-llama/Llama-2-7b-hf)")
    if not (folder / "config.json").is_file():
        raise UserError(f"base_model={base} has no config.json: not a Hugging Face model folder "
                        "(a GGUF file? python -m runner.models.gguf FILE OUT_DIR converts one)")


def complete(config: dict[str, Any]) -> None:
    """Fill the figures config["model_spec"] leaves out (model=auto: all of them) from base_model's own
    config.json (a local folder, the Hugging Face cache, or the hub when online: a few KB, never the
    weights), and say where they came from in `model_spec.source`. A group that states every figure is
    left as it is (its dry run needs no download)."""
    given = config["model_spec"]
    missing = [name for name in REQUIRED if given.get(name) is None]
    if not missing:
        given["num_experts"] = given.get("num_experts") or 1
        return
    base = str(config.get("base_model") or "")
    if given.get("build"):
        raise UserError(f"model_spec.{missing[0]} is not set: a model built by the runner (model_spec.build="
                        f"{given['build']}) needs every figure in its group")
    if not base:
        raise UserError("model=auto needs base_model: a hub id (org/name) or a local model folder")
    if base.startswith(LOCAL_PATH_PREFIXES):
        check_local_folder(base)
    revision = config.get("revision_of_model")
    own = read_config(base, revision, cache_dir=config.get("cache_dir")) or _download_config(base, revision)
    if own is None:
        raise UserError(f"base_model={base}: no config.json to read its architecture from (not a local model "
                        "folder, not in the Hugging Face cache, and the hub cannot be reached); download it once, "
                        "or give the figures as model_spec.NAME=VALUE")
    from runner.models.modules import check_architecture

    check_architecture(base, own, bool(config.get("trust_remote_code")))   # before figures it cannot have
    derived = derive(own)
    unknown = [name for name in missing if derived.get(name) is None]
    if unknown:
        raise UserError(f"base_model={base} ({own.get('model_type')}): {', '.join(unknown)} cannot be read off its "
                        "config.json; give them as model_spec.NAME=VALUE")
    for name in (*missing, "num_experts"):
        if given.get(name) is None:
            given[name] = derived[name]
    given["source"] = f"{base} config.json"


def _download_config(base: str, revision: str | None) -> dict[str, Any] | None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0") or base.startswith(LOCAL_PATH_PREFIXES):
        return None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(base, "config.json", revision=revision, etag_timeout=5)
    except Exception:  # noqa: BLE001 - unreachable or unknown: the caller says what is missing
        return None
    config = json.loads(Path(path).read_text())
    return config.get("text_config") if isinstance(config.get("text_config"), dict) else config


def describe(spec: dict[str, Any]) -> str:
    """The figures in a line, for the dry run."""
    experts = f", {spec['num_experts']} experts ({spec['active_params_b']:g} B active)" if (spec.get("num_experts") or 1) > 1 else ""
    return (f"{spec['params_b']:g} B parameters, hidden {spec['hidden_size']}, {spec['num_layers']} layers, "
            f"{spec['num_heads']} heads ({spec['num_kv_heads']} K/V), MLP {spec['intermediate_size']}, "
            f"vocab {spec['vocab_size']}{experts}")
