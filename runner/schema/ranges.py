"""Value ranges checked before anything is dispatched: a zero learning rate or a negative micro batch is
found here, in one line, not inside axolotl after the GPU is paid for."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.errors import UserError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False      # value > low (else >= low)
    high_open: bool = False     # value < high (else <= high)
    integer: bool = False
    allow: tuple = ()           # other accepted values: "auto", None, ...

    def describe(self) -> str:
        bounds = []
        if self.low is not None:
            bounds.append(f"{'more than' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'below' if self.high_open else 'at most'} {self.high:g}")
        text = "a whole number" if self.integer else "a number"
        if bounds:
            text += (" of " if bounds[0].startswith("at least") else " ") + " and ".join(bounds)
        others = [("null" if v is None else str(v)) for v in self.allow]
        return text + (f", or {' or '.join(others)}" if others else "")

    def accepts(self, value: Any) -> bool:
        if any(value == v and type(value) is type(v) for v in self.allow) or (value is None and None in self.allow):
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


def positive(integer: bool = False, allow: tuple = ()) -> Range:
    return Range(0, None, low_open=True, integer=integer, allow=allow)


def at_least(low: float, integer: bool = True, allow: tuple = ()) -> Range:
    return Range(low, None, integer=integer, allow=allow)


def fraction(allow: tuple = (), high_open: bool = True) -> Range:
    """0 ≤ value < 1 (a dropout, a warmup share)."""
    return Range(0, 1, high_open=high_open, allow=allow)


def lookup(config: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_ranges(config: dict[str, Any], ranges: dict[str, Range]) -> None:
    """The first value outside its range, as one line naming the key (keys not set are fine)."""
    for key, rule in ranges.items():
        present, value = lookup(config, key)
        # a value of another type is the type checks' to report (the schema's, or axolotl's own kinds)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if present and (numeric or value is None) and not rule.accepts(value):
            raise UserError(f"{key} must be {rule.describe()}, got {value!r}")
