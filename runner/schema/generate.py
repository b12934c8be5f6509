"""Regenerate axolotl_keys.json from the installed axolotl's pydantic schema.

    python -m runner.schema.generate          # after upgrading axolotl; commit the result

axolotl drops unknown keys silently, so the runner checks keys itself. Reading them from a JSON file
instead of importing axolotl keeps the dry run free of torch/transformers imports.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel

KEYS_FILE = Path(__file__).with_name("axolotl_keys.json")


def _names(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if isinstance(info.alias, str):
            names.add(info.alias)
    return names


def _plugin_keys() -> dict[str, list[str]]:
    """Keys that integrations (liger, cut_cross_entropy, ...) add when listed under `plugins`."""
    import axolotl.integrations as integrations

    keys: dict[str, list[str]] = {}
    for module_info in pkgutil.iter_modules(integrations.__path__):
        try:
            module = importlib.import_module(f"axolotl.integrations.{module_info.name}.args")
        except Exception:  # not every integration has args, some need optional packages
            continue
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                for key in _names(obj):
                    keys.setdefault(key, []).append(module_info.name)
    return {k: sorted(set(v)) for k, v in sorted(keys.items())}


def generate() -> dict:
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset

    return {
        "axolotl_version": version("axolotl"),
        "top_level": sorted(_names(AxolotlInputConfig)),
        "plugin_keys": _plugin_keys(),
        "dataset_entry": sorted(_names(SFTDataset)),
    }


def main() -> None:
    keys = generate()
    KEYS_FILE.write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {KEYS_FILE} ({len(keys['top_level'])} keys, axolotl {keys['axolotl_version']})")


if __name__ == "__main__":
    main()
