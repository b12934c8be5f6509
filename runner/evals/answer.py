"""Answer questions with a run's model and its training template: `runner.infer` here, `runner.serve` on
Modal next to the weights, the same code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.schema.evals import ENGINES


@dataclass(frozen=True)
class Question:
    prompt: str
    context: str | None = None


@dataclass(frozen=True)
class InferOptions:
    """How to answer (runner.infer's settings past the command's own; runner.serve receives them as a dict).
    A field's `choices` or `min` metadata is its range: runner.infer checks each given value against it."""

    model: str = field(default="tuned", metadata={"choices": ("tuned", "base")})
    max_new_tokens: int = field(default=128, metadata={"min": 1})
    engine: str = field(default="auto", metadata={"choices": ENGINES})
    raw: bool = False


# ---- prompts ------------------------------------------------------------------------------------
def render(config: dict[str, Any], question: Question, raw: bool, tokenizer: Any = None) -> tuple[str, bool]:
    """(prompt text, whether the tokenizer adds its special tokens) for the run's training format."""
    from runner.evals.prompts import PromptTemplate, training_type

    if raw:
        return question.prompt, True
    type_ = training_type(config)
    if isinstance(type_, dict):
        template = PromptTemplate.from_type(type_)
        return template.prompt({template.field_instruction: question.prompt,
                                template.field_input: question.context or ""}), True
    if question.context:
        raise UserError(f"context= needs a template with an input field; this run's format is '{type_}'")
    base_type, _, style = str(type_).partition(":")
    if base_type == "completion":
        return question.prompt, True
    if base_type == "alpaca":
        from axolotl.prompters import AlpacaPrompter

        return next(AlpacaPrompter(style or None).build_prompt(question.prompt)), True
    if base_type == "chat_template" and tokenizer is not None:
        messages = [{"role": "user", "content": question.prompt}]
        # the template writes BOS itself where the model wants one
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False
    raise UserError(f"no prompt template for dataset type '{type_}': pass raw=true to send the prompt as is")


# ---- answering ----------------------------------------------------------------------------------
class Answerer:
    """A run's model loaded once, answering questions with the run's template and stop strings."""

    def __init__(self, run_dir: Path, config: dict[str, Any], options: InferOptions):
        import os

        from runner.evals import generate, models
        from runner.evals.settings import EvalSettings
        from runner.stages import stage_env

        os.environ.update(stage_env(config))   # the runner's model cache, offline, like the stages
        self.config, self.options = config, options
        ref = models.tuned_model(run_dir, config) if options.model == "tuned" else models.base_model(config)
        data_format = (config.get("dataset") or {}).get("format")
        settings = EvalSettings.from_config(config).generation(data_format)
        self.generation = generate.GenerationSettings(max_new_tokens=options.max_new_tokens,
                                                      batch_size=settings.batch_size, stop=settings.stop)
        self.engine = generate.open_engine(generate.choose_engine(options.engine), ref, self.generation)

    def answer(self, questions: list[Question]) -> list[str]:
        tokenizer = self.engine.tokenizer
        ids = []
        for question in questions:
            text, special = render(self.config, question, self.options.raw, tokenizer)
            ids.append(list(tokenizer(text, add_special_tokens=special)["input_ids"]))
        return [a.strip() for a in self.engine.generate(ids)]

    def close(self) -> None:
        self.engine.close()
