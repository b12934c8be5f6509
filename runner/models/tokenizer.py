"""A local model folder's tokenizer, checked before anything runs from its JSON files (no tokenizer is
loaded): an EOS token, a pad token (axolotl pads with EOS where there is none: the runner sets that in the
config, so the record says it), and a chat template where the data is rendered with the tokenizer's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
DEFAULT_TEMPLATE = "tokenizer_default"   # axolotl's chat_template choice: the tokenizer's own template


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken's dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def read_tokenizer(folder: Path) -> dict[str, Any] | None:
    """{"eos", "pad", "chat_template"} of the tokenizer in `folder`; None when there is none."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    config = read_json(folder / "tokenizer_config.json")
    tokens = {**read_json(folder / "special_tokens_map.json"), **{k: v for k, v in config.items() if v is not None}}
    return {"eos": token_text(tokens.get("eos_token")), "pad": token_text(tokens.get("pad_token")),
            "chat_template": chat_template(folder) is not None}


def special_token(folder: Path, name: str) -> str | None:
    """A special token's text (bos_token, eos_token, ...) as tokenizer_config.json or special_tokens_map.json name it."""
    return token_text({**read_json(folder / "special_tokens_map.json"), **read_json(folder / "tokenizer_config.json")}.get(name))


def chat_template(folder: Path) -> str | None:
    """The tokenizer's chat template (the default one where it names several), where transformers finds it:
    tokenizer_config.json, chat_template.json or chat_template.jinja."""
    template = read_json(folder / "tokenizer_config.json").get("chat_template") \
        or read_json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):   # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    return template if isinstance(template, str) and template.strip() else None


def needs_chat_template(config: dict[str, Any]) -> bool:
    """A dataset rendered with the tokenizer's own template (type chat_template, chat_template=tokenizer_default
    or unset: axolotl's default)."""
    for key in ("datasets", "test_datasets"):
        for entry in config.get(key) or []:
            if isinstance(entry, dict) and entry.get("type") == "chat_template":
                choice = entry.get("chat_template") or config.get("chat_template") or DEFAULT_TEMPLATE
                if choice == DEFAULT_TEMPLATE:
                    return True
    return False


def check_tokenizer(config: dict[str, Any], folder: Path, shown: str) -> list[str]:
    """Check the tokenizer in `folder` against the config; set the pad token to EOS where it has none. The
    dry run's lines about it."""
    found = read_tokenizer(folder)
    if found is None:
        raise UserError(f"{shown} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): copy the model's "
                        "tokenizer files into it, or set tokenizer_config=<a folder or hub id with them>")
    special = config.get("special_tokens") or {}
    eos = special.get("eos_token") or found["eos"]
    if not eos:
        raise UserError(f"the tokenizer of {shown} has no EOS token (its tokenizer_config.json names none): set "
                        "special_tokens.eos_token='...' to the token that ends a text")
    lines = []
    pad = special.get("pad_token") or found["pad"]
    if not pad:
        config["special_tokens"] = {**special, "pad_token": eos}
        lines.append(f"set special_tokens.pad_token={eos!r} (the tokenizer has no pad token: its EOS, as axolotl would)")
        pad = eos
    template = "its own chat template" if found["chat_template"] else "no chat template"
    if needs_chat_template(config) and not found["chat_template"]:
        raise UserError(f"the tokenizer of {shown} has no chat template and the dataset's chat_template type renders "
                        "conversations with it: set chat_template=chatml (or another of axolotl's templates, or "
                        "chat_template=jinja chat_template_jinja=FILE)")
    return [f"tokenizer: EOS {eos!r}, pad {pad!r}, {template}", *lines]
