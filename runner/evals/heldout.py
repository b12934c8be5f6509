"""The eval stage's held-out split (the records and how each model's examples and prompts are made from them)
and the model it holds in memory between the base and the tuned evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.evals import generate
from runner.evals.prompts import PromptTemplate, read_jsonl, tokenize_example, training_type


@dataclass
class HeldOut:
    """The held-out split: the dataset's test file (tokenized here for each model, with the training
    template), or else axolotl's own tokenized eval split (other formats, val_set_size hold-outs)."""

    config: dict[str, Any]
    config_file: Path
    records: list[dict[str, Any]]
    template: PromptTemplate | None
    limit: int | None
    _axolotl: list | None = None

    @classmethod
    def of(cls, run_dir: Path, config: dict[str, Any], limit: int | None) -> HeldOut:
        dataset = config.get("dataset") or {}
        records = read_jsonl(dataset["test_path"], limit) if dataset.get("test_path") else []
        template = PromptTemplate.from_config(config) if isinstance(training_type(config), dict) else None
        if dataset.get("format") == "sqlqa" and template is None:
            raise UserError("eval: sqlqa data needs a prompt format dict in datasets[0].type")
        return cls(config, run_dir / "config.yml", records, template, limit)

    @property
    def generates(self) -> bool:
        """Text-to-SQL answers are generated and scored; other data gets loss and perplexity only."""
        return (self.config.get("dataset") or {}).get("format") == "sqlqa" and bool(self.records)

    @property
    def empty(self) -> bool:
        return not self.records and not self.config.get("val_set_size") and not self.config.get("test_datasets")

    @property
    def name(self) -> str:
        return "test" if self.records else "val"

    @property
    def size(self) -> int:
        return len(self.records) if self.records else len(self._axolotl or [])

    def prompt_ids(self, tokenizer: Any) -> list[list[int]]:
        """The generation prompts of the test records, tokenised as in training (BOS included)."""
        assert self.template is not None
        return [list(tokenizer(self.template.prompt(r))["input_ids"]) for r in self.records]

    def examples(self, tokenizer: Any) -> list:
        if self.template is not None and self.records:
            sequence_len = int(self.config.get("sequence_len") or 2048)
            on_inputs = bool(self.config.get("train_on_inputs"))
            return [tokenize_example(tokenizer, self.template, r, sequence_len, on_inputs) for r in self.records]
        if self._axolotl is None:
            from runner.evals.loss import axolotl_eval_examples

            self._axolotl = axolotl_eval_examples(self.config_file, self.limit)
        return self._axolotl


class Loaded:
    """The model the stage holds in memory, and which weights it is."""

    def __init__(self) -> None:
        self.ref: generate.ModelRef | None = None
        self.model: Any = None

    def load(self, ref: generate.ModelRef) -> tuple[Any, Any]:
        if generate.adapts(ref, self.ref):   # base + adapter over the base in memory: merged in place
            model, tokenizer = generate.merge_adapter(self.model, str(ref.adapter)), generate.load_tokenizer(ref)
        else:
            self.drop()   # free the GPU before the next weights arrive
            model, tokenizer = generate.load_model(ref)
        self.ref, self.model = ref, model
        return model, tokenizer

    def drop(self) -> None:
        if self.ref is not None:
            self.ref = self.model = None
            generate.release()
