"""Hydra's and OmegaConf's composition errors as one line for the user: the key or file and line, what is
wrong, and the closest valid choice.

    unknown key 'eval.engin' (did you mean 'eval.engine'?)
    gpu.count expects a whole number, got 'two'
    experiments/sweep.yaml:4: did not find expected ',' or ']' (while parsing a flow sequence)
    experiments/big.yaml:3: unknown model option 'mistrall' (did you mean 'mistral'?)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from runner.errors import did_you_mean

KINDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "String": "a string"}
NOT_FOUND = re.compile(r"Could not find '([^'/]+)/([^']+)'")
OPTIONS = re.compile(r"Available options in '[^']+':\n((?:\t.*\n?)*)")


def chain(error: BaseException) -> Iterable[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def shown(path: str | Path) -> str:
    """A path as the user knows it: relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def explain(error: BaseException, config_dirs: Iterable[Path] = ()) -> str:
    """The one line for a failed composition; `config_dirs` are searched for the file a bad option is in."""
    from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException,
                                  ValidationError)

    for cause in chain(error):
        if hasattr(cause, "problem_mark") and getattr(cause, "problem_mark", None) is not None:
            return _yaml(cause)
        if isinstance(cause, MissingMandatoryValue):
            key = getattr(cause, "full_key", "") or "a value"
            return f"{key} is required here: set {key}=..."
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
            return _unknown_key(cause.full_key, getattr(cause, "object_type", None))
        if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
            return _wrong_type(cause)
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            return f"{cause.full_key}: {_first_line(cause)}"
    text = str(error)
    if match := NOT_FOUND.search(text):
        return _missing_option(match.group(1), match.group(2), text, config_dirs)
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _yaml(error: BaseException) -> str:
    mark = error.problem_mark
    context = f" ({error.context})" if getattr(error, "context", None) else ""
    return f"{shown(mark.name)}:{mark.line + 1}: {error.problem}{context}"


def _unknown_key(full_key: str, object_type: type | None) -> str:
    parent, _, _ = full_key.rpartition(".")
    if object_type is not None and dataclasses.is_dataclass(object_type):
        options = [f"{parent}.{f.name}" if parent else f.name for f in dataclasses.fields(object_type)]
        return f"unknown key '{full_key}'{did_you_mean(full_key, options) or ' (keys here: ' + ', '.join(options) + ')'}"
    return f"unknown key '{full_key}'"


def _wrong_type(error: BaseException) -> str:
    text = str(error)
    value = re.search(r"Value '(.*?)'", text)
    kind = next((name for word, name in KINDS.items() if word in text), None)
    if "not a valid bool" in text:
        kind = "true or false"
    if kind and value:
        return f"{error.full_key} expects {kind}, got '{value.group(1)}'"
    return f"{error.full_key}: {_first_line(error)}"


def _missing_option(group: str, option: str, text: str, config_dirs: Iterable[Path]) -> str:
    """A group option named inside a config file (an experiment's defaults) that does not exist."""
    match = OPTIONS.search(text)
    options = [line.strip() for line in match.group(1).splitlines() if line.strip()] if match else []
    hint = did_you_mean(option, options) or (f" (choose from: {', '.join(options)})" if options else "")
    where = _line_naming(group, option, config_dirs)
    return f"{where + ': ' if where else ''}unknown {group} option '{option}'{hint}"


def _line_naming(group: str, option: str, config_dirs: Iterable[Path]) -> str | None:
    pattern = re.compile(rf"^\s*-\s*(override\s+)?/?{re.escape(group)}\s*:\s*{re.escape(option)}\s*(#.*)?$")
    for folder in config_dirs:
        for path in sorted(Path(folder).rglob("*.yaml")):
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, start=1):
                if pattern.match(line):
                    return f"{shown(path)}:{number}"
    return None
