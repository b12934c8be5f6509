"""Overrides → validated jobs. Everything that can be wrong with the input is found here, before a
run folder exists or anything is dispatched."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from runner import chat_prompt, memory, schedule, validate
from runner.backends.registry import backend_named
from runner.backends.placement import Placement, place
from runner.compose import DRY_RUN_ID, ComposedJob, JobOverrides, compose_job, expand_overrides
from runner.compute import ComputeSpec, compute_spec
from runner.datacheck import DataFile, check_data_file
from runner.models import spec as model_spec
from runner.settings import split_config
from runner.stages.boot import STARTUP_PLUGIN as STARTUP


GRACEFUL_STOP = "runner.integrations.graceful_stop.GracefulStopPlugin"
LAST_EVALUATION = "runner.integrations.last_evaluation.LastEvaluationPlugin"

# What planning derives from the composed config (runner/schedule.py and runner/memory.py: `auto` schedule
# and memory settings, save/eval schedules; the start-up and graceful-stop plugins; model=auto's figures read
# off config.json; the tokenizer's pad); a run's resolution takes
# them over instead of deriving them again.
DERIVED = ("num_epochs", "learning_rate", "sequence_len", "micro_batch_size", "gradient_checkpointing",
           "saves_per_epoch", "evals_per_epoch", "dataset_num_proc", "plugins", "special_tokens", "model_spec")


@dataclass
class Job:
    composed: ComposedJob
    config: dict[str, Any] = field(repr=False)      # resolved: runner keys + axolotl keys
    compute: ComputeSpec
    data: dict[str, DataFile]                      # "train" and, when there is one, "test"
    placement: Placement                           # where it runs: backend.name, or what `auto` chose
    launch: dict[str, Any] | None = None           # which launcher, sweep and job number (runner/sweeps.py)
    cache_key: str | None = None                   # runner/cache.py: same key, same result
    model_notes: list[str] = field(default_factory=list)   # what the model's own files said (the dry run's)

    @property
    def overrides(self) -> list[str]:
        return self.composed.overrides

    @property
    def choices(self) -> dict[str, str | None]:
        return self.composed.choices

    @property
    def axolotl_config(self) -> dict[str, Any]:
        return split_config(self.config)[1]

    def for_run(self, run_id: str, **values: Any) -> Job:
        """The same job with its paths resolved for a real run id (and `values`, e.g. where a Modal
        container finds the runs root, the model cache and the data)."""
        config = self.composed.resolve(run_id, **values)
        config["backend"]["name"] = self.placement.backend
        for key in DERIVED:   # settled when the job was planned; paths do not change them
            if key in self.config:
                config[key] = self.config[key]
        if self.config["dataset"].get("chat_prompt"):   # rendered from the tokenizer when planned
            config["dataset"]["chat_prompt"] = self.config["dataset"]["chat_prompt"]
            chat_prompt.use_rendered(config)
        return Job(self.composed, config, self.compute, self.data, self.placement, self.launch, self.cache_key,
                   self.model_notes)


def plan_job(overrides: JobOverrides) -> Job:
    return plan_composed(compose_job(overrides))


def plan_composed(composed: ComposedJob) -> Job:
    """Resolve, validate and place one composed job: every check that can fail runs here."""
    if composed.choices.get("gpu") == "auto":   # the cheapest option that fits (runner/gpu_choice.py)
        from runner.gpu_choice import choose

        composed = choose(composed)[1]
    config = composed.resolve(DRY_RUN_ID)
    choices = composed.choices
    model_spec.complete(config)   # model=auto: the figures from base_model's config.json
    validate.check_settings(config)
    placement = place(config)
    config["backend"]["name"] = placement.backend   # what the run folder and the stages see
    data = {"train": check_data_file(config["dataset"]["path"], config["dataset"]["format"])}
    if config["dataset"].get("test_path"):
        data["test"] = check_data_file(config["dataset"]["test_path"], config["dataset"]["format"])
    longest = data["train"].longest_record_chars
    avg_chars = _average_record_chars(data["train"])
    _resolve_settings(config, data["train"], avg_chars)
    schedule.resolve_data_processes(config, data["train"].records)
    plugins = config.get("plugins") or []
    # start-up work cut (first: it patches before the trainer's imports); SIGTERM/SIGHUP: a checkpoint, then stop
    config["plugins"] = [STARTUP, *(p for p in plugins if p not in (STARTUP, GRACEFUL_STOP, LAST_EVALUATION)),
                         *([LAST_EVALUATION] if eval_stage_scores_the_end(config) else []), GRACEFUL_STOP]
    validate.check_axolotl_keys(split_config(config)[1])
    validate.check_combination(config, choices)
    validate.check_build_target(config)
    validate.check_base_model(config, placement.backend, choices.get("model"))
    notes = validate.check_model_files(config, placement.backend)   # architecture, LoRA targets, tokenizer
    notes += chat_prompt.apply(config)   # an instruct model's prompts through its own chat template
    validate.check_platform_limits(config, placement.backend)
    validate.check_tracker_installed(config, placement.backend)
    validate.check_memory(config, choices, longest)
    platform = backend_named(placement.backend)
    worst = platform.job_bound(config)
    compute = compute_spec(config, data["train"].records, avg_chars, placement.auto, placement.reason, worst,
                           platform=platform)
    if composed.gpu_choice is not None:   # the speed model's figures, as the choice ranked them
        chosen = next(c for c in composed.gpu_choice.candidates if c.option == composed.gpu_choice.chosen)
        compute = replace(compute, est_hours=chosen.hours, est_cost_usd=chosen.cost_usd)
    return Job(composed, config, compute, data, placement, model_notes=notes)


def eval_stage_scores_the_end(config: dict[str, Any]) -> bool:
    """The eval stage measures the tuned model's loss on the whole held-out split, which the trainer's
    evaluation at its last step would measure too (runner/integrations/last_evaluation.py); not where the
    trainer needs that evaluation itself (the best checkpoint, early stopping)."""
    stages = config.get("stages") or {}
    return (bool(stages.get("eval", True) and stages.get("train", True)) and (config.get("eval") or {}).get("limit") is None
            and not config.get("load_best_model_at_end") and not config.get("early_stopping_patience"))


def _resolve_settings(config: dict[str, Any], train: DataFile, average: float) -> None:
    """Settings the runner derives from the composed config and the data: `auto` epochs, learning rate and
    row length (runner/schedule.py), `auto` memory values, save/eval schedules."""
    schedule.resolve(config, train, average)
    memory.resolve_memory_settings(config, train.longest_record_chars,
                                   schedule.micro_batch_cap(config, train, average))
    schedule.resolve_schedules(config)


def _average_record_chars(data: DataFile) -> float:
    import os

    return os.path.getsize(data.path) / max(data.records, 1)


def plan_jobs(overrides: list[str], multirun: bool) -> list[Job]:
    """Every job of a run or sweep, all validated before any is started."""
    return [plan_job(job_overrides) for job_overrides in expand_overrides(overrides, multirun)]
