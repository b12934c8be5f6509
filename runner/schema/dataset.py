"""The `dataset` node: the training and held-out files and their record format (conf/dataset/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from omegaconf import MISSING

FORMATS = ("sqlqa", "alpaca", "chat_template", "completion")


@dataclass
class DatasetSpec:
    format: str = MISSING               # the fields every line needs (runner/datacheck.py)
    path: str = MISSING                 # JSONL training data
    test_path: Optional[str] = None     # held out: eval loss and, for sqlqa, execution accuracy
    prompt: str = "tags"                # auto | chat | tags: the prompt through the model's chat template (runner/chat_prompt.py)
    chat_user: Optional[Dict[str, str]] = None    # the user's turn of that prompt: format, no_input_format
    chat_prompt: Optional[Dict[str, str]] = None  # the rendered prompt formats (set when the job is planned)


CHOICES = {"dataset.format": FORMATS, "dataset.prompt": ("auto", "chat", "tags")}
