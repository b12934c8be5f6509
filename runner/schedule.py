"""How long a run trains and in what steps, from its data and model: the `auto` values of `num_epochs`,
`learning_rate`, `sequence_len` and (with the memory model, runner/memory.py) `micro_batch_size`; the save and
eval schedules; and how many processes tokenise.

A micro batch sized for throughput alone starves small data of optimizer steps (700 records packed into
16 k-token micro batches made 5 steps an epoch), and a step size meant for a 7B model is timid for a small
one. On a real pretrained model (SmolLM2-135M-Instruct, 700 real text-to-SQL records, one H100,
bench/RESULTS.md §13) the old default (1 epoch, 4 steps, lr 2e-4) took the held-out loss from 1.60 to 1.43
and execution accuracy to 0.004; these rules (3 epochs, 69 steps of 4 096-token rows, lr 2e-3) take it to
0.180 and 0.33 in 35-39 s, where TRL's best configuration reaches 0.223 and 0.24 in 82 s.

- epochs: enough passes that the run sees about EXAMPLES_PER_RUN examples, between 1 and MAX_EPOCHS;
- learning rate: 2e-4 for LoRA at hidden width 4096 (the usual 7B setting), inversely proportional to
  the width (Adam's step size for hidden matrices shrinks with width), within LR_BOUNDS; a full fine-tune
  takes a tenth of it; steps made larger by the rows' round-up (below) take √2 of it at most;
- tokens per optimizer step: the run's tokens over TARGET_STEPS, at least MIN_STEP_TOKENS; the memory model
  caps the micro batch as before, so large data keeps large, fast steps;
- sequence_len (packed recipes): rows that hold a step's tokens (the power of two at or above them, from 512
  up), at least the longest example, at most MAX_SEQUENCE_LEN: small data takes one row a step and
  TARGET_STEPS / 2 to TARGET_STEPS steps (on the 135M model's 700 records: 69 steps of 4 096 tokens at lr 2e-3
  reach the loss and accuracy of 138 steps of 2 048 at 1.4e-3 in 15 s less);
- evals_per_epoch: about EVALS_PER_RUN held-out evaluations a run (each took ~3 s of a 135M model's train
  stage on an H100: 12 of them cost 27 of its 71 trainer seconds).
Token counts are estimated from the data file's size (no tokenizer at plan time): CHARS_PER_TOKEN.
"""

from __future__ import annotations

import math
from typing import Any

from runner.datacheck import DataFile

AUTO = "auto"
EXAMPLES_PER_RUN = 2000       # example passes a run aims for: 700 records → 3 epochs, 3 000 → 1
MAX_EPOCHS = 3
TARGET_STEPS = 96             # optimizer steps a run aims for, data permitting
MIN_STEP_TOKENS = 1024        # never smaller steps than this (a handful of examples)
MAX_SEQUENCE_LEN = 4096
MIN_SEQUENCE_LEN = 512
EVALS_PER_RUN = 3             # in-training held-out evaluations: enough for runner.curve's verdict
LORA_LR_AT_4096 = 2e-4
FULL_LR_FACTOR = 0.1
LR_BOUNDS = (1e-5, 2e-3)
CHARS_PER_TOKEN = 3.3         # a JSONL record's characters (keys and quotes included) per token, typical BPE
LONGEST_CHARS_PER_TOKEN = 3   # on the low side for the longest record: rows must hold it


def epochs(records: int) -> int:
    return max(1, min(MAX_EPOCHS, math.ceil(EXAMPLES_PER_RUN / max(1, records))))


def learning_rate(config: dict[str, Any], step_scale: float = 1.0) -> float:
    """The width rule, times the square root of `step_scale` (steps that many times larger than the ones the
    rule was measured with: Adam's square-root rule)."""
    width = int(config["model_spec"]["hidden_size"])
    rate = LORA_LR_AT_4096 * 4096 / width * (1.0 if config.get("adapter") else FULL_LR_FACTOR) * math.sqrt(step_scale)
    low, high = LR_BOUNDS if config.get("adapter") else (LR_BOUNDS[0], LR_BOUNDS[1] * FULL_LR_FACTOR)
    return float(f"{min(high, max(low, rate)):.2g}")


def step_tokens(config: dict[str, Any], data: DataFile, average_chars: float) -> int:
    """Tokens an optimizer step aims for: the run's (estimated) tokens spread over TARGET_STEPS."""
    run_tokens = data.records * average_chars / CHARS_PER_TOKEN * float(config["num_epochs"])
    return max(MIN_STEP_TOKENS, int(run_tokens / TARGET_STEPS))


def longest_tokens(data: DataFile) -> int:
    return data.longest_record_chars // LONGEST_CHARS_PER_TOKEN + 1


def sequence_len(config: dict[str, Any], data: DataFile, average_chars: float) -> int:
    """Packed rows that hold a step's tokens (the power of two at or above them: small data takes one row a
    step, between TARGET_STEPS / 2 and TARGET_STEPS steps), never shorter than the longest example, at most
    MAX_SEQUENCE_LEN (larger steps take more rows); without packing a row is one example: long enough for
    the longest."""
    floor = 1 << (max(longest_tokens(data), MIN_SEQUENCE_LEN) - 1).bit_length()
    if not config.get("sample_packing"):
        return min(MAX_SEQUENCE_LEN, floor)
    tokens = step_tokens(config, data, average_chars)
    return min(MAX_SEQUENCE_LEN, max(floor, 1 << (tokens - 1).bit_length()))


def step_scale(config: dict[str, Any], data: DataFile, average_chars: float) -> float:
    """How much larger than the width rule's steps this run's are, between 1 and 2: the learning rate was measured
    with packed rows of the power of two at or below a step's tokens; rows rounded up (small data: one row a
    step) make each step up to twice that (bench/RESULTS.md §13, seventh session: SmolLM2-135M, 700 records,
    4 096-token rows, lr 1.4e-3 → 2e-3 took execution accuracy 0.27 → 0.33 at the same 69 steps)."""
    if not config.get("sample_packing") or not isinstance(config.get("sequence_len"), int):
        return 1.0
    tokens = step_tokens(config, data, average_chars)
    measured = min(MAX_SEQUENCE_LEN, 1 << (tokens.bit_length() - 1))
    return min(2.0, max(1.0, int(config["sequence_len"]) / measured))


def micro_batch_cap(config: dict[str, Any], data: DataFile, average_chars: float) -> int:
    """The most rows a micro batch should hold for the data to get its steps (the memory model may allow
    more): packed rows of sequence_len tokens, or unpacked examples of the average length."""
    tokens = step_tokens(config, data, average_chars)
    per_row = int(config["sequence_len"]) if config.get("sample_packing") else average_chars / CHARS_PER_TOKEN
    return max(1, int(tokens // max(1.0, per_row)))


def resolve(config: dict[str, Any], data: DataFile, average_chars: float) -> None:
    """Fill in the `auto` schedule values (in this order: each may depend on the one before)."""
    if config.get("num_epochs") == AUTO:
        config["num_epochs"] = epochs(data.records)
    if config.get("sequence_len") == AUTO:
        config["sequence_len"] = sequence_len(config, data, average_chars)
    if config.get("learning_rate") == AUTO:
        config["learning_rate"] = learning_rate(config, step_scale(config, data, average_chars))
    if config.get("evals_per_epoch") == AUTO:
        config["evals_per_epoch"] = max(1, round(EVALS_PER_RUN / float(config["num_epochs"])))


# (per-epoch key, the schedule keys that replace it): axolotl turns `saves_per_epoch` into a
# fractional `save_steps`, and a `save_steps` overrides `save_strategy` - so `save_strategy: no` beside
# the default `saves_per_epoch: 1` still saved, every step once max_steps < num_epochs.
SCHEDULES = (("saves_per_epoch", "save_strategy", "save_steps"), ("evals_per_epoch", "eval_strategy", "eval_steps"))


def resolve_schedules(config: dict[str, Any]) -> None:
    """A save or eval schedule set by strategy or steps wins over the per-epoch defaults."""
    for per_epoch, strategy, steps in SCHEDULES:
        if config.get(steps) is not None or config.get(strategy) in ("no", "epoch"):
            config[per_epoch] = None


# Below this many training records the data is tokenised in the stage's own process: datasets 4 starts a
# spawned pool even for num_proc=1, and each worker imports torch and axolotl again before its first row
# (3 000 records: preprocess 58 s with 1, 16 s with 0 on this machine's 2 cores; bench/RESULTS.md §9).
IN_PROCESS_RECORDS = 50_000


def resolve_data_processes(config: dict[str, Any], records: int) -> None:
    """`dataset_num_proc: auto`: 0 (no worker processes) for small data, else axolotl's default (all CPUs)."""
    if config.get("dataset_num_proc") == "auto":
        config["dataset_num_proc"] = 0 if records < IN_PROCESS_RECORDS else None
