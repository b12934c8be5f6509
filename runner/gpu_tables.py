"""The two dated tables gpu=auto works from, in conf/: Modal's GPU prices (gpu_prices.yaml, the one price
table: the gpu options and the Modal backend's worst-case cost read it too) and the measured training speeds
with what scales them (gpu_speed.yaml). Plain YAML, read once per process."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from runner.errors import UserError
from runner.paths import CONF_DIR

PRICES = CONF_DIR / "gpu_prices.yaml"
SPEED = CONF_DIR / "gpu_speed.yaml"


@lru_cache(maxsize=None)
def _load(path: str) -> dict[str, Any]:
    import yaml
    from pathlib import Path

    return yaml.safe_load(Path(path).read_text()) or {}


def prices() -> dict[str, Any]:
    return _load(str(PRICES))


def speed() -> dict[str, Any]:
    return _load(str(SPEED))


def usd_per_gpu_hour(gpu_type: str) -> float:
    """$/h of one GPU of a Modal GPU type ('H100', 'A100-80GB'), from the dated table."""
    table = prices()["usd_per_second"]
    if gpu_type not in table:
        raise UserError(f"no price for Modal GPU '{gpu_type}' in conf/gpu_prices.yaml (it lists: {', '.join(table)})")
    return round(float(table[gpu_type]) * 3600, 4)
