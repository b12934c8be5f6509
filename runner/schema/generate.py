"""Regenerate axolotl_keys.json from the installed axolotl's pydantic schema.

    python -m runner.schema.generate          # after upgrading axolotl; commit the result

axolotl drops unknown keys silently, so the runner checks keys itself. Reading them from a JSON file
instead of importing axolotl keeps the dry run free of torch/transformers imports.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import types
import typing
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


PRIMITIVES = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}


def value_kinds(annotation) -> list[str] | None:
    """The JSON kinds a field accepts ("bool", "int", "float", "str", "null", "list", "dict"), or None
    when the annotation is too rich to check cheaply. Literal/Enum fields list their allowed values."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return value_kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds: list[str] = []
        for arg in typing.get_args(annotation):
            sub = value_kinds(arg)
            if sub is None:
                return None
            kinds += [k for k in sub if k not in kinds]
        return kinds
    if origin is typing.Literal:
        return ["=" + json.dumps(v) for v in typing.get_args(annotation)]
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        return ["list"]
    if origin is dict or annotation is dict:
        return ["dict"]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ["=" + json.dumps(m.value) for m in annotation if isinstance(m.value, (str, int))]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ["dict"]
    return [PRIMITIVES[annotation]] if annotation in PRIMITIVES else None


def _kinds(model: type[BaseModel]) -> dict[str, list[str]]:
    kinds = {}
    for name, info in model.model_fields.items():
        found = value_kinds(info.annotation)
        if found:
            kinds[name] = found
    return dict(sorted(kinds.items()))


def _plugin_classes() -> dict[str, str]:
    """integration name → its plugin class path, for the `plugins:` hint in error messages."""
    import axolotl.integrations as integrations
    from axolotl.integrations.base import BasePlugin

    classes = {}
    for module_info in pkgutil.iter_modules(integrations.__path__):
        try:
            module = importlib.import_module(f"axolotl.integrations.{module_info.name}")
        except Exception:
            continue
        for name, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, BasePlugin) and obj is not BasePlugin:
                classes[module_info.name] = f"axolotl.integrations.{module_info.name}.{name}"
                break
    return dict(sorted(classes.items()))


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
        "value_kinds": _kinds(AxolotlInputConfig),
        "plugin_keys": _plugin_keys(),
        "plugin_classes": _plugin_classes(),
        "dataset_entry": sorted(_names(SFTDataset)),
    }


def main() -> None:
    keys = generate()
    KEYS_FILE.write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {KEYS_FILE} ({len(keys['top_level'])} keys, axolotl {keys['axolotl_version']})")


if __name__ == "__main__":
    main()
