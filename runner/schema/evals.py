"""The `eval` node: the eval stage's settings (runner/stages/evaluate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from runner.schema.ranges import at_least, positive

ENGINES = ("auto", "vllm", "transformers")


@dataclass
class EvalConfig:
    engine: str = "auto"                 # auto | vllm | transformers (auto: vLLM if installed and a GPU is present)
    max_new_tokens: int = 64             # greedy tokens per answer
    batch_size: Optional[int] = None     # prompts per generate batch; sequences per loss batch (null: as many as fit)
    limit: Optional[int] = None          # evaluate only the first N held-out records
    base: bool = True                    # also evaluate the base model (base → tuned figures)
    stop: Optional[List[str]] = None     # stop strings besides EOS; null: ["[/SQL]"] for sqlqa, none otherwise
    sql_time_limit_s: float = 2.0        # per query when scoring execution accuracy


RANGES = {
    "eval.max_new_tokens": at_least(1),
    "eval.batch_size": at_least(1, allow=(None,)),
    "eval.limit": at_least(1, allow=(None,)),
    "eval.sql_time_limit_s": positive(),
}
CHOICES = {"eval.engine": ENGINES}
