"""Check a dataset file line by line before anything runs, and fingerprint it for provenance."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from collections.abc import Iterator

from runner.errors import UserError

# Fields each `dataset` group format needs on every JSONL line.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "sqlqa": ("question", "context", "answer"),
    "alpaca": ("instruction", "output"),
    "chat_template": ("messages",),
    "completion": ("text",),
}


@dataclass(frozen=True)
class DataFile:
    path: str
    records: int
    sha256: str
    longest_record_chars: int


def check_data_file(path: str | Path, data_format: str) -> DataFile:
    """Every line is a JSON object holding the format's fields; returns the record count and sha256."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"dataset file not found: {path}")
    stat = path.stat()
    # a sweep checks the same file once per job: reuse the result while the file is unchanged
    return _check_unchanged_file(str(path.resolve()), data_format, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _check_unchanged_file(path_text: str, data_format: str, size: int, mtime_ns: int) -> DataFile:
    path = Path(path_text)
    fields = REQUIRED_FIELDS.get(data_format)
    if fields is None:
        raise UserError(f"dataset.format '{data_format}' is not one of {', '.join(REQUIRED_FIELDS)}")
    digest = hashlib.sha256()
    records = longest = 0
    for number, raw, record in json_lines(path):
        digest.update(raw)
        if record is None:
            continue
        _check_record(record, fields, data_format, f"{path}:{number}")
        records += 1
        longest = max(longest, len(raw))
    if records == 0:
        raise UserError(f"dataset file is empty: {path}")
    return DataFile(path=str(path), records=records, sha256=digest.hexdigest(), longest_record_chars=longest)


def json_lines(path: Path) -> Iterator[tuple[int, bytes, dict | None]]:
    """(line number, raw bytes, object) for each line of a JSONL file; None for blank lines.
    A line that is not a JSON object is a UserError naming the file and line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                yield number, raw, None
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{path}:{number}: not valid JSON ({getattr(e, 'msg', e)})") from None
            if not isinstance(record, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, raw, record


def _check_record(record: dict, fields: tuple[str, ...], data_format: str, where: str) -> None:
    for field in fields:
        if field not in record or record[field] is None:
            raise UserError(f"{where}: missing field '{field}' needed by dataset={data_format}")
    if data_format == "chat_template":
        messages = record["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise UserError(f"{where}: 'messages' must be a list of {{\"role\", \"content\"}} objects")
