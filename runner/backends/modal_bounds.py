"""How long and how much a Modal job or sweep can take at worst: plain data, no `import modal`.

Every stage may run to its own timeout on every attempt (train: 1 + backend.retries attempts; the others
once), and all of it happens inside the app's `sweep` function, whose own timeout is Modal's longest
(SWEEP_LIMIT_H). Jobs of a sweep also wait: for a free place (backend.max_parallel at once, started in
plan order), and for the job that fetches their base model or tokenises their data first (runner/backends/
modal_sweep.py), after which they run that stage themselves if it failed. A sweep whose worst case does
not fit the sweep function is refused before anything is created: past that limit Modal stops the sweep,
queued jobs never start and no run records how it ended.

Not counted: Modal's own wait for free GPUs before a container starts, which no timeout bounds.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from runner.backends import modal_settings as ms
from runner.compute import parse_modal_gpu
from runner.errors import UserError
from runner.settings import STAGES

SWEEP_LIMIT_H = ms.MAX_TIMEOUT_H   # the `sweep` function's timeout (runner/backends/modal_app.py declares it)


def data_key(config: dict[str, Any]) -> str:
    """A planned job's tokenised data key (runner/cache.py: prepared_key), from its config: the data files'
    contents (hashed once per file, runner/datacheck.py) stand in for the hashes its plan carries."""
    from runner.cache import prepared_key
    from runner.datacheck import check_data_file
    from runner.settings import split_config

    dataset = config["dataset"]
    data = {split: check_data_file(dataset[key], dataset["format"]).sha256
            for split, key in (("train", "path"), ("test", "test_path")) if dataset.get(key)}
    return prepared_key(split_config(config)[1], data)


SHARED = {"prepare": ms.model_key, "preprocess": data_key}   # stages a sweep's jobs share


@dataclass(frozen=True)
class StageBound:
    timeout_h: float
    attempts: int
    gpus: int                   # 0: a CPU stage
    usd_per_gpu_hour: float
    wait_h: float = 0.0         # for another job's run of the same shared stage

    @property
    def hours(self) -> float:
        return self.wait_h + self.timeout_h * self.attempts

    @property
    def gpu_cost_usd(self) -> float:   # waiting holds no GPU
        return self.timeout_h * self.attempts * self.gpus * self.usd_per_gpu_hour


@dataclass(frozen=True)
class JobBound:
    stages: dict[str, StageBound]   # the enabled stages, in order

    @property
    def hours(self) -> float:
        return sum(stage.hours for stage in self.stages.values())

    @property
    def gpu_cost_usd(self) -> float:
        return sum(stage.gpu_cost_usd for stage in self.stages.values())

    @property
    def attempts(self) -> int:
        return max((stage.attempts for stage in self.stages.values()), default=1)

    def describe(self) -> str:
        """'prepare 0.5 h, preprocess 0.5 h, train 10 h × 2 attempts, eval 1 h'"""
        parts = []
        for name, stage in self.stages.items():
            text = f"{name} {_h(stage.timeout_h)}" + (f" × {stage.attempts} attempts" if stage.attempts > 1 else "")
            parts.append(text + (f" (+ up to {_h(stage.wait_h)} waiting for another job's)" if stage.wait_h else ""))
        return ", ".join(parts)

    def summary(self) -> str:
        return f"{self.describe()} = {_h(self.hours)} of the {_h(SWEEP_LIMIT_H)} the sweep function may run"


@dataclass(frozen=True)
class SweepBound:
    jobs: list[JobBound]
    max_parallel: int
    hours: float                    # the last job's end, every job at its worst, max_parallel at a time

    @property
    def gpu_cost_usd(self) -> float:
        return sum(job.gpu_cost_usd for job in self.jobs)

    def describe(self) -> str:
        at_once = f"{min(self.max_parallel, len(self.jobs))} at a time"
        return (f"{len(self.jobs)} jobs, {at_once}: at most {_h(self.hours)} (the sweep function may run "
                f"{_h(SWEEP_LIMIT_H)}) and ${self.gpu_cost_usd:,.2f} of GPU time")


def _h(hours: float) -> str:
    return f"{hours:.1f}".rstrip("0").rstrip(".") + " h"


def gpu_prices() -> dict[str, float]:
    """$/h per GPU of each Modal GPU type (conf/gpu_prices.yaml), for merge_gpu and eval_gpu."""
    from runner.gpu_tables import prices, usd_per_gpu_hour

    return {gpu_type: usd_per_gpu_hour(gpu_type) for gpu_type in prices()["usd_per_second"]}


def job_bound(config: dict[str, Any], waits: frozenset[str] = frozenset()) -> JobBound:
    """The job's worst case, from the very options its stages are called with (modal_settings.stage_options).
    `waits`: the shared stages this job may first wait for another job to run."""
    options, enabled = ms.stage_options(config), ms.enabled_stages(config)
    own_type = parse_modal_gpu(config["gpu"]["modal"])[0]
    stages = {}
    for stage in STAGES:
        if not enabled[stage]:
            continue
        opts = options[stage]
        gpu_type, gpus = parse_modal_gpu(opts.gpu) if opts.gpu else (own_type, 0)

        def price_of(card: str) -> float:   # the job's own price for its card; another's from the table
            return float(config["gpu"]["usd_per_hour"]) if card == own_type else \
                gpu_prices().get(card, float(config["gpu"]["usd_per_hour"]))

        # with a fallback list the worst case is its dearest card
        price = max(price_of(card) for card in [gpu_type, *(parse_modal_gpu(g)[0] for g in opts.fallbacks)])
        timeout_h = opts.timeout_s / 3600
        stages[stage] = StageBound(timeout_h, opts.retries + 1, gpus, price, timeout_h if stage in waits else 0.0)
    return JobBound(stages)


def sweep_bound(configs: list[dict[str, Any]]) -> SweepBound:
    """The sweep's worst case: each job at its worst (the first job of each model or data group runs the
    shared stage, the later ones may wait for it), started in plan order as places free up."""
    leaders: dict[str, set[str]] = {stage: set() for stage in SHARED}
    jobs = []
    for config in configs:
        waits = set()
        enabled = ms.enabled_stages(config)
        for stage, key_of in SHARED.items():
            key = key_of(config)
            if enabled[stage] and key in leaders[stage]:
                waits.add(stage)
            if enabled[stage]:
                leaders[stage].add(key)
        jobs.append(job_bound(config, frozenset(waits)))
    places = ms.max_parallel(configs[0])
    # the sweep's thread pool: a job starts when one of `places` frees up, in plan order; with every job at
    # its worst no shorter real run can end any later (each start is monotone in the durations before it)
    free = [0.0] * min(places, len(jobs))
    end = 0.0
    for job in jobs:
        start = heapq.heappop(free)
        heapq.heappush(free, start + job.hours)
        end = max(end, start + job.hours)
    return SweepBound(jobs, places, end)


def check_job(config: dict[str, Any]) -> JobBound:
    """One job alone fits the sweep function that runs it (the plan checks this for every Modal job)."""
    bound = job_bound(config)
    if bound.hours > SWEEP_LIMIT_H:
        train = bound.stages.get("train")
        room = SWEEP_LIMIT_H - (bound.hours - train.hours) if train else 0
        most = math.floor(room / train.attempts * 10) / 10 if train else 0
        hint = (f"lower backend.timeout_h to at most {most:g}, backend.retries or backend.timeouts_min.*"
                if most > 0 else "lower backend.timeouts_min.*")
        raise UserError(f"this job may run {_h(bound.hours)} on Modal ({bound.describe()}), more than the "
                        f"{_h(SWEEP_LIMIT_H)} Modal allows the sweep function that runs it: {hint}")
    return bound


def check_sweep(configs: list[dict[str, Any]]) -> SweepBound:
    """The whole sweep fits the sweep function; else one line saying what to change."""
    bound = sweep_bound(configs)
    if bound.hours <= SWEEP_LIMIT_H:
        return bound
    longest = max(job.hours for job in bound.jobs)
    ways = []
    if len(bound.jobs) > bound.max_parallel and longest <= SWEEP_LIMIT_H:
        ways.append(f"raise backend.max_parallel to {len(bound.jobs)}")
    ways += ["lower backend.timeout_h (or backend.retries)", "split the sweep"]
    raise UserError(f"this sweep may run {_h(bound.hours)} on Modal ({len(bound.jobs)} jobs, "
                    f"{min(bound.max_parallel, len(bound.jobs))} at a time, each up to {_h(longest)}: every "
                    f"stage to its timeout on every attempt), more than the {_h(SWEEP_LIMIT_H)} Modal allows its "
                    f"sweep function: {', '.join(ways[:-1])} or {ways[-1]}")
