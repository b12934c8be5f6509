"""How a job ended, as every backend reports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    run_dir: Path | None                   # None: the job never got a run folder
    state: str                             # succeeded | failed | submitted (Modal, detached)
    metrics: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    cached: bool = False                   # not run: an earlier run with the same cache key (runner/cache.py)
