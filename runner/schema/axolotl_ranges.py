"""Ranges of the axolotl numbers users set most. axolotl's schema types them but accepts a zero batch, a
negative learning rate or a dropout of 2, and the run fails (or trains nothing) after the GPU is paid for."""

from __future__ import annotations

from runner.schema.ranges import Range, at_least, fraction, positive

OPTIONAL = (None,)
AXOLOTL_RANGES: dict[str, Range] = {
    "micro_batch_size": at_least(1, allow=("auto",)),
    "gradient_accumulation_steps": at_least(1),
    "eval_batch_size": at_least(1, allow=OPTIONAL),
    "sequence_len": at_least(1, allow=("auto",)),
    "learning_rate": Range(0, 1, low_open=True, allow=("auto",)),
    "num_epochs": positive(allow=("auto",)),
    "max_steps": at_least(1, allow=OPTIONAL),
    "lora_r": at_least(1, allow=OPTIONAL),
    "lora_alpha": positive(allow=OPTIONAL),
    "lora_dropout": fraction(allow=OPTIONAL),
    "warmup_steps": at_least(0, allow=OPTIONAL),
    "warmup_ratio": fraction(allow=OPTIONAL),
    "weight_decay": Range(0, allow=OPTIONAL),
    "max_grad_norm": Range(0, allow=OPTIONAL),
    "logging_steps": positive(allow=OPTIONAL),
    "save_steps": positive(allow=OPTIONAL),
    "eval_steps": positive(allow=OPTIONAL),
    "saves_per_epoch": at_least(1, allow=OPTIONAL),
    "evals_per_epoch": at_least(1, allow=(None, "auto")),
    "save_total_limit": at_least(1, allow=OPTIONAL),
    "val_set_size": Range(0, allow=OPTIONAL),
    "dataset_num_proc": at_least(0, allow=(None, "auto")),   # 0: in the stage's own process
}
