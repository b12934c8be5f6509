"""Prompts exactly as training saw them: the dataset group's template, rendered the way axolotl renders it.

The sqlqa group (and any custom format) gives axolotl a template dict under `datasets[0].type`; axolotl
loads it as `user_defined` (axolotl/prompt_strategies/user_defined.py) and renders it with
SystemDataPrompter.build_prompt_w_system. `PromptTemplate.prompt` is that rendering, and
`tokenize_example` is InstructionWSystemPromptTokenizingStrategy.tokenize_prompt: the prompt tokenized on
its own (the tokenizer adds BOS, no EOS), then the answer without BOS and with EOS. So the token ids a
model is prompted with at eval time are the ones it was trained to continue. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runner.errors import UserError

IGNORE_INDEX = -100   # label of a token the loss skips (Hugging Face and axolotl convention)


@dataclass(frozen=True)
class PromptTemplate:
    """axolotl's UserDefinedDatasetConfig, with the same defaults."""

    system_prompt: str = ""
    field_system: str = "system"
    field_instruction: str = "instruction"
    field_input: str = "input"
    field_output: str = "output"
    format: str = "{instruction} {input} "
    no_input_format: str = "{instruction} "
    system_format: str = "{system}"

    @classmethod
    def from_type(cls, type_: Any) -> PromptTemplate:
        if not isinstance(type_, dict):
            raise UserError(f"eval: the prompt template must be a format dict (datasets[0].type), got {type_!r}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in type_.items() if k in known})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PromptTemplate:
        return cls.from_type(training_type(config))

    def prompt(self, record: dict[str, Any]) -> str:
        """The text before the answer (SystemDataPrompter.build_prompt_w_system without the output)."""
        instruction = record[self.field_instruction]
        input_text = record.get(self.field_input, "")
        system = record.get(self.field_system, self.system_prompt)
        text = self.system_format.format(system=system) if system and self.system_format else ""
        if input_text:
            return text + self.format.format(instruction=instruction, input=input_text)
        return text + self.no_input_format.format(instruction=instruction)

    def answer(self, record: dict[str, Any]) -> str:
        return record.get(self.field_output, "")


def training_type(config: dict[str, Any]) -> Any:
    datasets = config.get("datasets") or []
    if not datasets:
        raise UserError("eval: the config has no `datasets` entry to take the prompt template from")
    return datasets[0].get("type")


def tokenize_example(tokenizer: Any, template: PromptTemplate, record: dict[str, Any], sequence_len: int,
                     train_on_inputs: bool = False) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one record, as axolotl tokenizes it for training and eval loss."""
    prompt_ids = _tokenize(tokenizer, template.prompt(record), sequence_len)
    labels = list(prompt_ids) if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
    answer_ids = _tokenize(tokenizer, template.answer(record), sequence_len)
    if answer_ids and answer_ids[-1] != tokenizer.eos_token_id and len(answer_ids) < sequence_len:
        answer_ids.append(tokenizer.eos_token_id)
    if answer_ids and answer_ids[0] == tokenizer.bos_token_id:
        answer_ids = answer_ids[1:]
    return prompt_ids + answer_ids, labels + answer_ids


def _tokenize(tokenizer: Any, text: str, sequence_len: int) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, truncation=True, max_length=sequence_len, padding=False)["input_ids"])


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                records.append(json.loads(line))
                if limit is not None and len(records) >= limit:
                    break
    return records
