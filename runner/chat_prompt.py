"""Prompts through the base model's own chat template, for instruct models (`dataset.prompt`).

The sqlqa group prompts in Modal's example format (`[INST] … [/INST] `, answers in `[SQL]` tags). A model
tuned to follow instructions in its own chat format does not know it: SmolLM2-135M-Instruct left 281 of 300
held-out questions without a parsable answer, so its "base execution accuracy 0.000" measured the format,
not the model. With `dataset.prompt: chat` (and `auto`, the default, when a local base model's tokenizer has
a chat template) the same instruction goes through that template as the user's turn, with the
assistant's turn opened for the answer: training, the eval's prompts and its loss all see the text the
model was instruction-tuned on. The answers stay what the data says (`[SQL] … [/SQL]`).

The template is rendered here, once, when the job is planned (jinja2, as transformers renders it, no
tokenizer loaded), into axolotl's own prompt format (the dataset type's `format` and `no_input_format`),
so the run's config.yml shows the exact prompt. Only a tokenizer on this machine can be read when the job
is planned: a local folder; hub models keep the group's format unless its tokenizer folder is given
(`tokenizer_config=<folder>`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.models.tokenizer import chat_template, read_json, special_token

CHOICES = ("auto", "chat", "tags")
CONTENT = "\x00content\x00"   # stands for the user's message while the template renders


def render(template: str, folder: Path) -> str:
    """The template applied to one user message (CONTENT) with the assistant's turn opened, as
    transformers' apply_chat_template(add_generation_prompt=True) renders it; a leading BOS is left out
    (the tokenizer adds its own, as for any prompt axolotl tokenizes)."""
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False, **kw)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: "")
    bos = special_token(folder, "bos_token") or ""
    try:
        text = env.from_string(template).render(messages=[{"role": "user", "content": CONTENT}], add_generation_prompt=True,
                                                bos_token=bos, eos_token=special_token(folder, "eos_token") or "")
    except TemplateError as e:
        raise UserError(f"the chat template of {folder} does not render one user message: {e}") from None
    if text.count(CONTENT) != 1:
        raise UserError(f"the chat template of {folder} does not put the user's message in its text once; "
                        "set dataset.prompt=tags")
    return text[len(bos):] if bos and text.startswith(bos) and adds_bos(folder, bos) else text


def adds_bos(folder: Path, bos: str) -> bool:
    """The tokenizer puts BOS before any text it tokenizes (tokenizer_config's add_bos_token, or a
    post-processor whose template starts with it): then a template's own BOS would come twice."""
    config = read_json(folder / "tokenizer_config.json")
    if "add_bos_token" in config:
        return bool(config["add_bos_token"])
    processor = read_json(folder / "tokenizer.json").get("post_processor") or {}
    for step in processor.get("processors") or [processor]:
        single = step.get("single") if isinstance(step, dict) and step.get("type") == "TemplateProcessing" else None
        if single:
            return (single[0].get("SpecialToken") or {}).get("id") == bos
    return False


def _tokenizer_folder(config: dict[str, Any]) -> Path | None:
    from runner.models import spec

    name = str(config.get("tokenizer_config") or config.get("base_model") or "")
    if not name.startswith(spec.LOCAL_PATH_PREFIXES):
        return None
    folder = Path(name).expanduser()
    return folder if folder.is_dir() else None


def _formats(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt format dicts (axolotl's user_defined types) of the training and held-out datasets."""
    return [entry["type"] for key in ("datasets", "test_datasets") for entry in config.get(key) or []
            if isinstance(entry, dict) and isinstance(entry.get("type"), dict) and "format" in entry["type"]]


def apply(config: dict[str, Any]) -> list[str]:
    """Render `dataset.prompt` into the config's prompt formats (dataset.chat_prompt keeps what was
    rendered, for the run's own resolution); the dry run's lines about it."""
    dataset = config.get("dataset") or {}
    choice = dataset.get("prompt") or "tags"
    if choice not in CHOICES:
        raise UserError(f"dataset.prompt={choice} is not one of {', '.join(CHOICES)}")
    user = dataset.get("chat_user") or {}
    if choice == "tags" or not _formats(config) or not user:
        return []
    folder = _tokenizer_folder(config)
    template = chat_template(folder) if folder else None
    if template is None:
        if choice == "chat":
            where = f"the tokenizer of {folder}" if folder else f"base_model={config.get('base_model')} (not a local folder)"
            raise UserError(f"dataset.prompt=chat needs the model's chat template, and {where} has none here: "
                            "set tokenizer_config=<a local folder with the tokenizer>, or dataset.prompt=tags")
        return []
    try:
        opened = render(template, folder).replace("{", "{{").replace("}", "}}")
    except UserError as e:
        if choice == "chat":
            raise
        return [f"prompt: the group's format ({e})"]
    dataset["chat_prompt"] = {key: opened.replace(CONTENT, user[key]) for key in ("format", "no_input_format")}
    use_rendered(config)
    return [f"prompt: the model's own chat template (dataset.prompt={choice}; dataset.prompt=tags for the group's "
            f"format): {dataset['chat_prompt']['format']!r}"]


def use_rendered(config: dict[str, Any]) -> None:
    """Put the rendered chat prompt (dataset.chat_prompt) into every prompt format of the config."""
    rendered = (config.get("dataset") or {}).get("chat_prompt")
    if rendered:
        for fmt in _formats(config):
            fmt.update(rendered)
