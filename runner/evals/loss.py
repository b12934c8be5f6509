"""Eval loss and perplexity on held-out examples: mean cross-entropy per trained-on token.

Examples are (input_ids, labels) pairs tokenized as for training (labels IGNORE_INDEX where the trainer
does not learn, e.g. the prompt). For a template dict the eval stage tokenizes the held-out file itself
(runner.evals.prompts.tokenize_example); for every other dataset format axolotl's own eval split is
loaded from the prepared dataset (`axolotl_eval_examples`), so the figures cover what the trainer held out.
The loss here is the mean over all answer tokens of the split (the trainer's eval_loss averages per
batch, so the two differ slightly).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runner.evals.prompts import IGNORE_INDEX

Example = tuple[list[int], list[int]]


def mean_token_loss(model: Any, examples: list[Example], pad_id: int, batch_size: int | None = None,
                    memory_bytes: int | None = None) -> dict[str, Any]:
    """{"eval_loss", "perplexity", "eval_tokens", "per_example"} of `model` on `examples` (batch_size None: as
    many rows as fit, runner.evals.generate.rows_that_fit, in `memory_bytes` when given). `per_example`:
    [summed loss, answer tokens] for each example in order (None for one without answer tokens), for the
    base → tuned interval (runner.evals.bootstrap)."""
    import torch
    import torch.nn.functional as F

    from runner.evals.generate import attention_kernels, rows_that_fit

    scored = [i for i, e in enumerate(examples) if any(label != IGNORE_INDEX for label in e[1][1:])]
    order = sorted(scored, key=lambda i: -len(examples[i][0]))
    if not batch_size:
        batch_size = rows_that_fit(model, len(examples[order[0]][0]) if order else 1, max(1, len(order)), logits=True,
                                   memory_bytes=memory_bytes)
    tail_only = _takes_logits_to_keep(model)
    per_example: list[list[float] | None] = [None] * len(examples)
    device = model.device
    for start in range(0, len(order), max(1, batch_size)):
        indices = order[start : start + batch_size]
        with torch.inference_mode(), attention_kernels():
            logits, targets = (_tail_logits if tail_only else _all_logits)(
                model, [examples[i] for i in indices], pad_id, device)
            answer = targets != IGNORE_INDEX
            losses = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
            losses[answer] = F.cross_entropy(logits[answer].float(), targets[answer], reduction="none")
            for i, row_loss, row_tokens in zip(indices, losses.sum(-1).tolist(), answer.sum(-1).tolist()):
                per_example[i] = [row_loss, int(row_tokens)]
    total = sum(e[0] for e in per_example if e)
    count = sum(e[1] for e in per_example if e)
    if not count:
        return {"eval_loss": None, "perplexity": None, "eval_tokens": 0, "per_example": per_example}
    loss = total / count
    return {"eval_loss": round(loss, 5), "perplexity": round(math.exp(min(loss, 700.0)), 4), "eval_tokens": count,
            "per_example": per_example}


def _takes_logits_to_keep(model: Any) -> bool:
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "logits_to_keep" in parameters and "position_ids" in parameters


def _all_logits(model: Any, batch: list[Example], pad_id: int, device: Any) -> tuple[Any, Any]:
    """Right-padded rows, logits at every position: (logits predicting token t+1, the labels of t+1)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=device)
    labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in batch], device=device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
    return model(input_ids=ids, attention_mask=mask).logits[:, :-1], labels[:, 1:]


def _tail_logits(model: Any, batch: list[Example], pad_id: int, device: Any) -> tuple[Any, Any]:
    """The same figures with logits for the answers' positions only: rows padded on the left, so every
    answer ends at the right edge, with positions counted from each row's first real token (the padding is
    then invisible, as on the right), and the language-model head run on the last positions that predict
    an answer token (`logits_to_keep`), not over the vocabulary for every prompt token as well."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    first = min(width - len(lab) + next(j for j in range(1, len(lab)) if lab[j] != IGNORE_INDEX) for _, lab in batch)
    keep = width - first + 1   # the position before each answer token predicts it
    ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids, _ in batch], device=device)
    labels = torch.tensor([[IGNORE_INDEX] * (width - len(lab)) + lab for _, lab in batch], device=device)
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in batch], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    return logits[:, :-1], labels[:, width - keep + 1:]


def axolotl_eval_examples(config_file: Path, limit: int | None = None) -> list[Example]:
    """axolotl's eval split (test_datasets, or the val_set_size hold-out) as the trainer tokenized it,
    read from the prepared dataset that the preprocess stage wrote."""
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets

    meta = load_datasets(cfg=load_cfg(str(config_file)))
    dataset = meta.eval_dataset
    if dataset is None:
        return []
    rows = range(len(dataset)) if limit is None else range(min(limit, len(dataset)))
    return [(list(dataset[i]["input_ids"]), list(dataset[i]["labels"])) for i in rows]
