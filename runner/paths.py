"""Where the project's files are: the config tree, the experiments and the shipped data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The project is config-as-code: conf/ and experiments/ live in the checkout next to the package.
PROJECT_ROOT = Path(os.environ.get("RUNNER_PROJECT", PACKAGE_DIR.parent)).resolve()
CONF_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
DATA_DIR = PACKAGE_DIR / "data"


def data_file(name: str) -> str:
    """Absolute path of a file shipped in runner/data (the `${data_file:NAME}` resolver)."""
    return str(DATA_DIR / name)
