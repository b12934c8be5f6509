"""The eval stage's settings: the runner-owned `eval:` node of the composed config, with defaults here.

    eval:
      engine: auto            # auto | vllm | transformers (auto: vLLM if installed and a GPU is present)
      max_new_tokens: 64      # generated tokens per answer, greedy
      batch_size: null        # prompts per batch (transformers) and sequences per loss batch; null: as
                              #   many as fit in half the GPU's free memory (64 on a CPU)
      limit: null             # evaluate only the first N held-out records
      base: true              # also evaluate the base model, for base → tuned figures
      stop: null              # stop strings besides EOS; null: ["[/SQL]"] for sqlqa, none otherwise
      sql_time_limit_s: 2.0   # per query, when scoring execution accuracy
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from runner.errors import UserError, did_you_mean
from runner.evals.generate import ENGINES, GenerationSettings

SQL_STOP = ("[/SQL]",)


@dataclass(frozen=True)
class EvalSettings:
    engine: str = "auto"
    max_new_tokens: int = 64
    batch_size: int | None = None
    limit: int | None = None
    base: bool = True
    stop: tuple[str, ...] | None = None
    sql_time_limit_s: float = 2.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvalSettings:
        node = dict(config.get("eval") or {})
        known = {f.name for f in fields(cls)}
        for key in node:
            if key not in known:
                raise UserError(f"unknown setting eval.{key}{did_you_mean(key, known)}")
        settings = cls(**{**node, "stop": tuple(node["stop"]) if node.get("stop") is not None else None})
        settings.check()
        return settings

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise UserError(f"eval.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UserError(f"eval.max_new_tokens must be a whole number of at least 1, got {self.max_new_tokens!r}")
        for key in ("batch_size", "limit"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"eval.{key} must be null or a whole number of at least 1, got {value!r}")
        if not isinstance(self.sql_time_limit_s, (int, float)) or self.sql_time_limit_s <= 0:
            raise UserError(f"eval.sql_time_limit_s must be positive, got {self.sql_time_limit_s!r}")

    def generation(self, data_format: str | None) -> GenerationSettings:
        stop = self.stop if self.stop is not None else (SQL_STOP if data_format == "sqlqa" else ())
        return GenerationSettings(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, stop=tuple(stop))
