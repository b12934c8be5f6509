"""Build the tiny Llama-architecture model of `model=tiny`, deterministically and offline.

A byte-level BPE tokenizer is trained on the shipped sqlqa training data (so table and column names
are single tokens and spaces survive decoding), then a Llama with random weights (seed 0) is saved
with it. The result is cached by a fingerprint of its inputs and rebuilt only when they change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runner.paths import data_file

BUILD_VERSION = 1
SOURCE_DATA = "sqlqa-train.jsonl"
SEED = 0
# Prompt markers stay single tokens, but are not "special": decoding must keep them.
MARKERS = ["[INST]", "[/INST]", "[SQL]", "[/SQL]"]
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def fingerprint(spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(Path(data_file(SOURCE_DATA)).read_bytes())
    keys = ("hidden_size", "num_layers", "intermediate_size", "vocab_size", "num_heads", "num_kv_heads")
    digest.update(json.dumps({"v": BUILD_VERSION, **{k: spec[k] for k in keys}}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def is_tiny_folder(target: Path) -> bool:
    """`target` is empty, missing, or a tiny model this module built (any fingerprint): safe to (re)build."""
    if not target.is_dir() or not any(target.iterdir()):
        return True
    manifest = target / "runner-build.json"
    try:
        return "fingerprint" in json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False


def is_built(target: Path, spec: dict[str, Any]) -> bool:
    manifest = target / "runner-build.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint(spec)


def _training_texts() -> list[str]:
    texts = []
    with open(data_file(SOURCE_DATA)) as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['context']}\n{record['question']}\n{record['answer']}")
    # the instruction line of the sqlqa prompt, so it tokenises compactly too
    texts.append("Using the schema context below, generate a SQL query that answers the question.")
    return texts


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(MARKERS),
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_texts(), trainer=trainer)
    bos = tokenizer.token_to_id(SPECIAL["bos_token"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos_token']}:0 $A:0", special_tokens=[(SPECIAL["bos_token"], bos)]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=1024, **SPECIAL)
    wrapped.add_tokens(MARKERS)
    return wrapped


def build(target: Path, spec: dict[str, Any]) -> Path:
    """Write tokenizer + random-init LlamaForCausalLM to `target` unless an identical build is there.

    Jobs side by side (local GPUs, submitit) may prepare the same model at once: one builds, the others
    wait on the lock and then find it built."""
    import fcntl

    if is_built(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_built(target, spec):
            _build(target, spec)
    return target


def _build(target: Path, spec: dict[str, Any]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(spec["vocab_size"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"],
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    staging = target.with_name(target.name + ".building")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / "runner-build.json").write_text(json.dumps({
        "fingerprint": fingerprint(spec),
        "parameters": sum(p.numel() for p in model.parameters()),
        "source_data": SOURCE_DATA,
        "seed": SEED,
    }, indent=2) + "\n")
    if target.exists():
        import shutil

        shutil.rmtree(target)
    staging.rename(target)
