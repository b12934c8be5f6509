"""The `stages` node: which stages of prepare → preprocess → train → merge → eval run."""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("prepare", "preprocess", "train", "merge", "eval")


@dataclass
class StagesConfig:
    prepare: bool = True      # build the tiny model, or download the base model
    preprocess: bool = True   # tokenise (axolotl preprocess)
    train: bool = True
    merge: bool = False       # adapter + base → outputs/merged (eval, infer, serve use base + adapter without it)
    eval: bool = True         # base and tuned on the held-out split
