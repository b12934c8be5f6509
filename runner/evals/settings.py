"""The eval stage's settings: the composed config's `eval` node, read back from a run's config.

The node is declared once, as runner.schema.evals.EvalConfig (keys and types enforced by OmegaConf when the
job is composed, ranges and the engine's name by runner/validate.py when it is planned: bad input never
reaches a stage); this adds what the stage derives from it.
"""

from __future__ import annotations

from typing import Any

from runner.evals.generate import GenerationSettings
from runner.schema.evals import EvalConfig

SQL_STOP = ("[/SQL]",)


class EvalSettings(EvalConfig):
    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvalSettings:
        return cls(**(config.get("eval") or {}))

    def generation(self, data_format: str | None) -> GenerationSettings:
        stop = self.stop if self.stop is not None else (SQL_STOP if data_format == "sqlqa" else ())
        return GenerationSettings(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, stop=tuple(stop))
