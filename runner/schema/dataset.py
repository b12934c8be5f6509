"""The `dataset` node: the training and held-out files and their record format (conf/dataset/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

FORMATS = ("sqlqa", "alpaca", "chat_template", "completion")


@dataclass
class DatasetSpec:
    format: str = MISSING               # the fields every line needs (runner/datacheck.py)
    path: str = MISSING                 # JSONL training data
    test_path: Optional[str] = None     # held out: eval loss and, for sqlqa, execution accuracy


CHOICES = {"dataset.format": FORMATS}
