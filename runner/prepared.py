"""Tokenised data shared by the runs under one runs root: which data key a run folder has, whether an
earlier run's preprocess left its tokens (and where, read from axolotl's log), and a lock so that one job at
a time tokenises a key.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from runner.records import write_json
from runner.runfolder import RunFolder


def data_key(folder: RunFolder) -> tuple[dict[str, Any], str] | None:
    import yaml

    from runner.cache import prepared_key
    from runner.records import read_json

    axolotl_config = yaml.safe_load(folder.config_file.read_text())
    data = (read_json(folder.path / "provenance.json", {}).get("data") or {})
    if not axolotl_config.get("dataset_prepared_path") or not data:
        return None
    return axolotl_config, prepared_key(axolotl_config, {split: d.get("sha256") for split, d in data.items()})


def prepared_before(folder: RunFolder) -> dict[str, Any] | None:
    """The record of an earlier preprocess with this run's data key, if its data is still there. axolotl's
    preprocess command always tokenises again; its train command loads what is prepared (by its own hash)."""
    from runner.cache import prepared_marker
    from runner.records import read_json

    keyed = data_key(folder)
    if keyed is None:
        return None
    record = read_json(prepared_marker(*keyed), None)
    if not record or not record.get("datasets") or not all(Path(p).is_dir() for p in record["datasets"]):
        return None
    return record


PREPARED = re.compile(r"(?:Unable to find prepared dataset in|Loading prepared dataset from disk at) (/\S+?)(?:\.\.\.)?$")


def record_prepared(folder: RunFolder, stage: str = "preprocess") -> None:
    """After the stage that tokenised (preprocess, or a train it was folded into): which of axolotl's
    prepared folders hold this data key's tokens (from its log)."""
    from runner.cache import prepared_marker

    keyed = data_key(folder)
    log = folder.log_file(stage)
    if keyed is None or not log.is_file():
        return
    datasets = sorted({m.group(1) for line in log.read_text(errors="replace").splitlines() if (m := PREPARED.search(line))})
    if datasets and all(Path(p).is_dir() for p in datasets):
        write_json(prepared_marker(*keyed), {"run_id": folder.run_id, "path": str(keyed[0]["dataset_prepared_path"]),
                                             "datasets": datasets})


class TokenisingLock:
    """One job at a time tokenises a data key under a runs root: the first takes <prepared>/_runner/<key>.lock
    (an exclusive flock) before its preprocess (or the train it is folded into) and lets go once the trainer
    logs its first step (the tokens are saved by then) or the stage ends; a second job with the same key,
    started meanwhile, waits for it, saying so, and then loads those tokens instead of writing the same
    folder at the same time."""

    def __init__(self, folder: RunFolder, label: str | None = None):
        from runner.cache import prepared_marker

        keyed = data_key(folder)
        self.path = prepared_marker(*keyed).with_suffix(".lock") if keyed else None
        self.run_id, self.label = folder.run_id, label
        self.fd: int | None = None
        self.waited_for: str | None = None

    def acquire(self) -> None:
        import fcntl
        import os

        from runner.cache import WAIT, preprocess_decision

        if self.path is None or self.fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        if preprocess_decision(tokenising_elsewhere=busy) == WAIT:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another job"
            print(f"  {self.label + ' ' if self.label else ''}preprocess  waiting: run {holder} is tokenising the "
                  f"same data", file=sys.stderr, flush=True)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.waited_for = holder
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, self.run_id.encode(), 0)

    def release(self) -> None:
        import fcntl
        import os

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
