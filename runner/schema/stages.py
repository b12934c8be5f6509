"""The `stages` node: which stages of prepare → preprocess → train → merge → eval run."""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("prepare", "preprocess", "train", "merge", "eval")


@dataclass
class StagesConfig:
    prepare: bool = True      # build the tiny model, or download the base model
    preprocess: bool = True   # tokenise (axolotl preprocess)
    train: bool = True
    merge: bool = True        # adapter + base → outputs/merged (skipped for full fine-tunes)
    eval: bool = True         # base and tuned on the held-out split
