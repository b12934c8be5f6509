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
    """{"eval_loss", "perplexity", "eval_tokens"} of `model` on `examples` (batch_size None: as many rows as
    fit, runner.evals.generate.rows_that_fit, in `memory_bytes` when given)."""
    import torch
    import torch.nn.functional as F

    from runner.evals.generate import attention_kernels, rows_that_fit

    examples = [e for e in examples if any(label != IGNORE_INDEX for label in e[1][1:])]
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    if not batch_size:
        batch_size = rows_that_fit(model, len(examples[order[0]][0]) if order else 1, max(1, len(order)), logits=True,
                                   memory_bytes=memory_bytes)
    total, count = 0.0, 0
    device = model.device
    for start in range(0, len(order), max(1, batch_size)):
        batch = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=device)
        labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in batch], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
        with torch.inference_mode(), attention_kernels():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            targets = labels[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((targets != IGNORE_INDEX).sum())
    if not count:
        return {"eval_loss": None, "perplexity": None, "eval_tokens": 0}
    loss = total / count
    return {"eval_loss": round(loss, 5), "perplexity": round(math.exp(min(loss, 700.0)), 4), "eval_tokens": count}


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
