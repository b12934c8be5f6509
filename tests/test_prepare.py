"""prepare: the tiny model builds deterministically offline; hub models download into the cache."""

import json
import sys
import types

import huggingface_hub.errors  # noqa: F401 - stays importable while the package is faked below

from runner.models import hub, tiny
from runner.stages import prepare

TINY_SPEC = {"hidden_size": 32, "num_layers": 1, "intermediate_size": 64, "vocab_size": 600,
             "num_heads": 2, "num_kv_heads": 2, "build": "tiny"}


def test_tiny_model_builds_deterministically_and_is_cached(tmp_path):
    first = tiny.build(tmp_path / "a", TINY_SPEC)
    second = tiny.build(tmp_path / "b", TINY_SPEC)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    manifest = json.loads((first / "runner-build.json").read_text())
    assert tiny.is_built(first, TINY_SPEC) and manifest["seed"] == 0
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    tiny.build(first, TINY_SPEC)  # unchanged inputs: nothing rebuilt
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_tiny_tokenizer_keeps_prompt_markers_and_spaces(tmp_path):
    from transformers import AutoTokenizer

    path = tiny.build(tmp_path / "m", TINY_SPEC)
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = "[SQL] SELECT name FROM employee WHERE age > 30 [/SQL]"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.convert_tokens_to_ids("[/SQL]") != tokenizer.unk_token_id


def test_hub_models_download_into_the_cache_with_the_token(monkeypatch, tmp_path):
    calls = {}

    def fake_snapshot_download(**kwargs):
        calls.update(kwargs)
        return str(tmp_path / "snapshot")

    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = fake_snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    config = {"base_model": "mistralai/Mistral-7B-v0.1", "cache_dir": str(tmp_path), "model_spec": {"build": None}}
    assert prepare.prepare(config) == str(tmp_path / "snapshot")
    assert calls["repo_id"] == "mistralai/Mistral-7B-v0.1"
    assert calls["cache_dir"] == str(tmp_path / "hub") and calls["token"] == "hf_secret"
    assert "*.safetensors" in calls["allow_patterns"] and "*.bin" not in calls["allow_patterns"]
    assert hub.hub_cache(tmp_path) == tmp_path / "hub"
