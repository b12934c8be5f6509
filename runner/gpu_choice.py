"""gpu=auto: the gpu option with the lowest expected cost that fits the job in memory and whose expected
train time meets `deadline_h`, within `budget_usd`; ties (to the cent) go to the faster one.

Each candidate is the job itself with that option's hardware: the memory model (runner/memory.py) settles
the `auto` micro batch and checkpointing for the card and says whether the job fits; the combination checks
(runner/validate.py) say whether the option can run it at all (DeepSpeed's sharding needs several GPUs);
the speed model (runner/gpu_speed.py) gives tokens/s, measured or scaled; prices come from
conf/gpu_prices.yaml. Options that change the training recipe (t4: fp16) are composed with it, so their
memory is their own recipe's. The job is then composed and planned with the chosen option as if the user
had named it; the ranked table goes to the dry run and to job.json.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from runner import gpu_speed, memory, schedule, validate
from runner.compose import DRY_RUN_ID, ComposedJob, JobOverrides, compose_job, group_options, translate
from runner.compute import FIXED_OVERHEAD_H, parse_modal_gpu, train_tokens
from runner.datacheck import check_data_file
from runner.errors import UserError, unknown
from runner.gpu_tables import usd_per_gpu_hour
from runner.paths import CONF_DIR


@dataclass(frozen=True)
class Candidate:
    option: str
    modal: str                   # Modal's GPU string
    need_gib: float              # per GPU, the memory model's, at the settings it picks for this card
    card_gib: float
    micro_batch: int
    tokens_per_s: float
    speed: str                   # measured | scaled
    basis: str                   # how the speed figure was made
    hours: float                 # expected train stage: start-up + tokens / tokens_per_s
    cost_usd: float              # hours × GPUs × price; 0 on this machine
    where: str                   # this machine, or the backend that runs it (modal, slurm)
    rejected: str | None = None  # why it cannot be chosen; None: eligible

    @property
    def fits(self) -> bool:
        return self.need_gib <= self.card_gib


@dataclass(frozen=True)
class GpuChoice:
    chosen: str
    deadline_h: float | None
    budget_usd: float | None
    candidates: list[Candidate]              # ranked: eligible by cost then time, then the rejected
    fallbacks: list[str] = field(default_factory=list)   # Modal GPU strings: the chosen's, then stand-ins
    #                                                    (the job's gpu.fallbacks: Modal's fallback list)

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "deadline_h": self.deadline_h, "budget_usd": self.budget_usd,
                "fallbacks": self.fallbacks, "candidates": [asdict(c) for c in self.candidates]}

    def lines(self) -> list[str]:
        """The ranked table as the dry run prints it."""
        limits = ", ".join(f"{k}={v:g}" for k, v in (("deadline_h", self.deadline_h), ("budget_usd", self.budget_usd))
                           if v is not None) or "no deadline or budget"
        rows = [f"gpu=auto chose {self.chosen} ({limits}; Modal fallbacks: {', '.join(self.fallbacks)})",
                f"  {'option':<10} {'GiB needed/card':>15} {'tokens/s':>10} {'':<8} {'train time':>10} {'cost':>9}  note"]
        for c in self.candidates:
            note = "chosen" if c.option == self.chosen else (c.rejected or "")
            if c.where == "this machine":
                note = f"{note} ({c.where})".strip()
            rows.append(f"  {c.option:<10} {f'{c.need_gib:.1f}/{c.card_gib:g}':>15} {c.tokens_per_s:>10,.0f} {c.speed:<8} "
                        f"{_hours(c.hours):>10} {f'${c.cost_usd:,.2f}':>9}  {note}".rstrip())
        return rows


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def is_auto(composed: ComposedJob) -> bool:
    return composed.choices.get("gpu") == "auto"


def choose(composed: ComposedJob) -> tuple[GpuChoice, ComposedJob]:
    """The choice, and the job composed with the chosen option (carrying the choice)."""
    auto = composed.resolve(DRY_RUN_ID)
    settings = auto["gpu"]
    options = _candidate_options(settings.get("candidates"))
    nodes = {o: _option(o, settings.get("prices") or {}) for o in options}
    peaks = {parse_modal_gpu(n["gpu"]["modal"])[0]: float(n["gpu"]["peak_tflops"])
             for n in _all_options().values() if n["gpu"].get("modal")}
    base = _without_gpu(composed.overrides)
    deadline, budget = auto.get("deadline_h"), auto.get("budget_usd")

    composed_for: dict[str, ComposedJob] = {}
    candidates = []
    for defaults in dict.fromkeys(repr(nodes[o].get("defaults")) for o in options):   # one composition per recipe
        group = [o for o in options if repr(nodes[o].get("defaults")) == defaults]
        # gpu=auto's own composition has the default recipe; an option that picks another is composed with it
        first = composed if defaults == "None" else compose_job(JobOverrides([*base, f"gpu={group[0]}"],
                                                                               composed.overrides))
        config, longest, cap, tokens = _prepared(first)
        if first is not composed:
            composed_for[group[0]] = first
        for option in group:
            candidates.append(_evaluate(option, nodes[option]["gpu"], config, first.choices, longest, cap, tokens, peaks))
    candidates = _limits(candidates, deadline, budget)
    eligible = sorted((c for c in candidates if not c.rejected), key=lambda c: (round(c.cost_usd, 2), c.hours))
    if not eligible:
        raise UserError(_nothing(candidates, config, deadline, budget))
    rejected = sorted((c for c in candidates if c.rejected), key=lambda c: (not c.fits, c.cost_usd))
    chosen = eligible[0]
    group_of = {o: repr(nodes[o].get("defaults")) for o in options}
    fallbacks = [chosen.modal] + [c.modal for c in eligible[1:]
                                  if group_of[c.option] == group_of[chosen.option] and c.card_gib >= chosen.need_gib
                                  and parse_modal_gpu(c.modal)[1] == parse_modal_gpu(chosen.modal)[1]]
    choice = GpuChoice(chosen.option, deadline, budget, [*eligible, *rejected], list(dict.fromkeys(fallbacks)))
    # the stand-ins go to Modal with the job (gpu.fallbacks), unless the user named their own
    stand_ins = [] if any(o.lstrip("+~").startswith("gpu.fallbacks=") for o in base) else choice.fallbacks[1:]
    if stand_ins:
        listed = ",".join(f"'{gpu}'" for gpu in stand_ins)
        final = compose_job(JobOverrides([*base, f"gpu={chosen.option}", f"++gpu.fallbacks=[{listed}]"],
                                         composed.overrides))
    else:
        final = composed_for.get(chosen.option) or compose_job(JobOverrides([*base, f"gpu={chosen.option}"],
                                                                            composed.overrides))
    final.gpu_choice = choice
    return choice, final


@lru_cache(maxsize=1)
def _all_options() -> dict[str, dict[str, Any]]:
    """Every gpu option's file but auto's, as plain data (callers copy what they change)."""
    import yaml

    return {o: yaml.safe_load((CONF_DIR / "gpu" / f"{o}.yaml").read_text()) or {}
            for o in group_options()["gpu"] if o != "auto"}


def _candidate_options(named: list[str] | None) -> list[str]:
    gpus = [o for o, node in _all_options().items() if (node.get("gpu") or {}).get("modal")]
    if named is None:
        return gpus
    for option in named:
        if option not in gpus:
            raise unknown("gpu.candidates option", option, gpus)
    if not named:
        raise UserError(f"gpu.candidates is empty: name some gpu options (e.g. gpu.candidates=[l40s,a100,h100])")
    return list(dict.fromkeys(named))


def _option(option: str, prices: dict[str, float]) -> dict[str, Any]:
    """The option's file as plain data, its price resolved (gpu.prices over the dated table)."""
    node = copy.deepcopy(_all_options()[option])
    gpu_type = parse_modal_gpu(node["gpu"]["modal"])[0]
    node["gpu"]["usd_per_hour"] = float(prices[gpu_type]) if gpu_type in prices else usd_per_gpu_hour(gpu_type)
    return node


def _without_gpu(display: list[str]) -> list[str]:
    """The job's overrides in Hydra's form, without its gpu option (the candidate's goes in its place)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    return [t.hydra for t in translate(list(display), multirun=False)
            if parser.parse_override(t.hydra).key_or_group.lstrip("+~") != "gpu"]


def _prepared(composed: ComposedJob) -> tuple[dict[str, Any], int, int, float]:
    """The resolved config with the data's settings (epochs, row length) as planning derives them; the
    longest record, the data's micro batch cap and the train stage's tokens."""
    import os

    from runner.models import spec as model_spec

    config = composed.resolve(DRY_RUN_ID)
    model_spec.complete(config)
    train = check_data_file(config["dataset"]["path"], config["dataset"]["format"])
    average = os.path.getsize(train.path) / max(train.records, 1)
    schedule.resolve(config, train, average)
    return (config, train.longest_record_chars, schedule.micro_batch_cap(config, train, average),
            train_tokens(config, train.records, average))


def _evaluate(option: str, gpu: dict[str, Any], prepared: dict[str, Any], choices: dict[str, Any],
              longest: int, cap: int, tokens: float, peaks: dict[str, float]) -> Candidate:
    from runner.backends.placement import place
    from runner.backends.registry import backend_named

    config = {**copy.deepcopy(prepared), "gpu": {**prepared["gpu"], **gpu}}
    memory.resolve_memory_settings(config, longest, cap)
    need = memory.estimate(config, longest_record_chars=longest).total
    rejected = None
    try:
        validate.check_combination(config, {**choices, "gpu": option})
    except UserError as e:
        rejected = str(e)
    if rejected is None and need > gpu["memory_gib"]:
        rejected = f"does not fit: needs ~{need:.0f} GiB per GPU of its {gpu['memory_gib']:g}"
    speed = gpu_speed.estimate(config, gpu, memory.row_tokens(config, longest), peaks)
    backend = config["backend"]["name"]
    # this machine has the option's cards (backend=auto's test): it runs there at no cost
    here = backend_named(place({**config, "backend": {**config["backend"], "name": "auto"}}).backend).runs_here
    only_here = backend_named(backend).runs_here
    if only_here and not here and rejected is None:
        rejected = f"not on this machine (backend={backend}): it has no {gpu['modal']}"
    local = here and (only_here or backend == "auto")
    hours = tokens / speed.tokens_per_s / 3600 + (0 if local else FIXED_OVERHEAD_H)
    count = parse_modal_gpu(gpu["modal"])[1]
    cost = 0.0 if local else hours * count * float(gpu["usd_per_hour"])
    return Candidate(option, gpu["modal"], round(need, 2), float(gpu["memory_gib"]), int(config["micro_batch_size"]),
                     round(speed.tokens_per_s, 1), speed.source, speed.basis, hours, cost,
                     "this machine" if local else ("modal" if backend == "auto" else backend), rejected)


def _limits(candidates: list[Candidate], deadline: float | None, budget: float | None) -> list[Candidate]:
    """Candidates that fit but miss the deadline or the budget, marked so."""
    from dataclasses import replace

    marked = []
    for c in candidates:
        if c.rejected is None and deadline is not None and c.hours > deadline:
            c = replace(c, rejected=f"misses deadline_h={deadline:g}")
        elif c.rejected is None and budget is not None and c.cost_usd > budget:
            c = replace(c, rejected=f"over budget_usd={budget:g}")
        marked.append(c)
    return marked


def _nothing(candidates: list[Candidate], config: dict[str, Any], deadline: float | None,
             budget: float | None) -> str:
    """One line: the nearest option and what would make it work."""
    fitting = [c for c in candidates if c.rejected is None or c.rejected.startswith(("misses", "over"))]
    if not fitting:
        sized = [c for c in candidates if c.rejected and c.rejected.startswith("does not fit")] or candidates
        near = min(sized, key=lambda c: c.need_gib / c.card_gib)
        return (f"gpu=auto: no gpu option fits this job: the nearest, {near.option}, {near.rejected}"
                f": try {', or '.join(_memory_hints(config))}")
    in_time = [c for c in fitting if deadline is None or c.hours <= deadline]
    if not in_time:
        fastest = min(fitting, key=lambda c: c.hours)
        longer = math.ceil(fastest.hours * 10) / 10
        return (f"gpu=auto: no option that fits finishes within deadline_h={deadline:g}: the fastest, {fastest.option}, "
                f"takes ~{_hours(fastest.hours)} (${fastest.cost_usd:,.2f}): set deadline_h={longer:g} or more, or "
                f"train on fewer tokens (num_epochs, the data)")
    cheapest = min(in_time, key=lambda c: c.cost_usd)
    within = f" within deadline_h={deadline:g}" if deadline is not None else ""
    more = math.ceil(cheapest.cost_usd * 100) / 100
    return (f"gpu=auto: nothing{within} costs at most budget_usd={budget:g}: the cheapest, {cheapest.option}, "
            f"costs ~${cheapest.cost_usd:,.2f} ({_hours(cheapest.hours)}): set budget_usd={more:g} or more"
            + (", or a longer deadline_h" if deadline is not None else ""))


def _memory_hints(config: dict[str, Any]) -> list[str]:
    hints = []
    if config.get("adapter") != "qlora":
        hints.append("adapter=qlora")
    if not config.get("adapter") and memory.zero_stage(config.get("deepspeed"))[0] < 3:
        hints.append("deepspeed=zero3 (shards a full fine-tune across GPUs)")
    if config.get("micro_batch_size") not in ("auto", 1):
        hints.append("a smaller micro_batch_size (or auto)")
    if config.get("gradient_checkpointing") not in ("auto", True):
        hints.append("gradient_checkpointing=true")
    hints.append("a shorter sequence_len")
    return hints
