"""Optuna searches (`-m hparams_search=...`, `hydra/sweeper=optuna`): Hydra's Optuna sweeper, with everything
a search needs checked before its study or first trial exists, and a dry run that starts nothing.

Before the plugin runs, `OptunaSearch.sweep`:
- parses the search space (`hydra.sweeper.params` and `-m` sweep overrides) into Optuna distributions, so a
  log range from 0 or an interval whose low is not below its high is one line;
- checks the sweeper's own settings (direction, trial counts, failure rate);
- plans (composes, validates, places) the job at every choice and at both ends of every range, with the
  other parameters at their first value, so a value no job accepts is refused before any trial starts;
- checks that `objective.metric` is a figure those jobs will write (runner.sweeps.check_objective).
With `dry_run=true` it then prints the search and the first trial's job as a grid's dry run would, and
returns: no study, no sweep folder, no run folder. After the search, one whose trials all failed is one
line (exit 2) instead of Optuna's "No trials are completed yet" traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper   # light: Optuna loads when it runs

from runner.errors import UserError
from runner.schema.objective import DIRECTIONS


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def search_space(arguments: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(distributions, fixed values, fixed overrides) from `name=sweep` strings, as the plugin reads them."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    try:
        return create_params_from_overrides(arguments)
    except Exception as e:   # the override grammar's and Optuna's distribution errors alike
        raise UserError(f"search space: {_first_line(e)}") from None


def probe_points(distributions: dict[str, Any]) -> list[dict[str, Any]]:
    """Every choice and both ends of every range, the other parameters at their first value."""
    from optuna.distributions import CategoricalDistribution

    values = {name: list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high]
              for name, d in distributions.items()}
    base = {name: options[0] for name, options in values.items()}
    points = [base]
    for name, options in values.items():
        points += [{**base, name: value} for value in options[1:] if value != base[name]]
    return points


def overrides_of(point: dict[str, Any], fixed: dict[str, Any], fixed_overrides: list[str]) -> list[str]:
    return [*(f"{name}={value}" for name, value in {**point, **fixed}.items()), *fixed_overrides]


def directions(direction: Any) -> list[str]:
    items = [direction] if isinstance(direction, str) or not isinstance(direction, Iterable) else list(direction)
    names = [getattr(d, "name", d) for d in items]
    for name in names:
        if name not in DIRECTIONS:
            raise UserError(f"objective.direction={name} is not a direction: use minimize or maximize")
    if len(names) != 1:
        raise UserError(f"a search optimises one objective (objective.metric), got {len(names)} directions")
    return names


def check_settings(impl: Any, rate: Any) -> None:
    for key, value, low in (("n_trials", impl.n_trials, 1), ("n_jobs", impl.n_jobs, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"hydra.sweeper.{key} must be a whole number ≥ {low}, got {value}")
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise UserError(f"hydra.sweeper.max_failure_rate must be between 0 and 1, got {rate}")


def sampler_text(sampler: Any, config: Any) -> str:
    node = config.hydra.sweeper.get("sampler") or {}
    name = sampler.func.__name__ if isinstance(sampler, functools.partial) else type(sampler).__name__
    seed = node.get("seed") if hasattr(node, "get") else None
    return f"{name} (seed {seed})" if seed is not None else f"{name} (no seed: trials differ between searches)"


def space_text(distributions: dict[str, Any]) -> list[str]:
    from optuna.distributions import CategoricalDistribution

    lines = []
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            lines.append(f"#   {name}: one of {', '.join(map(str, d.choices))}")
        else:
            kind = "log-uniform" if getattr(d, "log", False) else "uniform"
            step = f", step {d.step}" if getattr(d, "step", None) not in (None, 1) else ""
            lines.append(f"#   {name}: {kind} in [{d.low}, {d.high}]{step}")
    return lines


class OptunaSearch(OptunaSweeper):
    """Hydra's Optuna sweeper with the runner's checks first (see the module's docstring)."""

    def __init__(self, *args: Any, max_failure_rate: float = 0.0, **kwargs: Any) -> None:
        # the plugin asserts on a rate outside [0, 1] while Hydra builds it: checked in sweep(), in one line
        self.max_failure_rate = max_failure_rate
        valid = isinstance(max_failure_rate, (int, float)) and 0 <= max_failure_rate <= 1
        super().__init__(*args, max_failure_rate=max_failure_rate if valid else 0.0, **kwargs)

    def sweep(self, arguments: list[str]) -> None:
        from runner.backends import check_one_backend
        from runner.launcher import plan_overrides
        from runner.sweeps import check_objective

        impl = self.sweeper
        impl._process_searchspace_config()
        distributions, fixed, fixed_overrides = search_space([*impl._parse_sweeper_params_config(), *arguments])
        for name in fixed:
            distributions.pop(name.lstrip("+~"), None)   # a value set on the command line wins over its range
        names = directions(impl.direction)
        check_settings(impl, self.max_failure_rate)
        if not distributions:
            raise UserError("the search has no space: set hydra.sweeper.params (name: interval(...) or choice(...))")
        points = probe_points(distributions)
        jobs = []
        for point in points:
            overrides = overrides_of(point, fixed, fixed_overrides)
            try:
                jobs.append(plan_overrides(impl.hydra_context.config_loader, impl.config, overrides,
                                           impl.launcher.task_function))
            except UserError as e:
                raise UserError(f"search trial {' '.join(f'{k}={v}' for k, v in point.items())}: {e}") from None
        first = jobs[0]
        if first.config["objective"]["direction"] != names[0]:
            raise UserError(f"hydra.sweeper.direction={names[0]} disagrees with objective.direction="
                            f"{first.config['objective']['direction']}: set objective.direction")
        check_objective(first.config)
        if all(job.config.get("dry_run") for job in jobs):
            self._dry_run(distributions, fixed, fixed_overrides, names[0], first, len(jobs))
            return None
        check_one_backend(jobs)
        try:
            return impl.sweep(arguments)
        except ValueError as e:
            if "No trials are completed" in str(e):
                raise UserError(f"none of the search's {impl.n_trials} trials succeeded: see each trial's line "
                                f"above, or `python -m runner.runs list`") from None
            raise

    def _dry_run(self, distributions: dict[str, Any], fixed: dict[str, Any], fixed_overrides: list[str],
                 direction: str, probe: Any, checked: int) -> None:
        """The search as it would run, and its first trial's job; nothing is created (the study is in memory)."""
        import optuna

        from runner.backends import dry_run
        from runner.launcher import plan_overrides

        impl = self.sweeper
        job = probe
        if isinstance(impl.sampler, optuna.samplers.BaseSampler):
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            trial = optuna.create_study(sampler=impl.sampler, direction=direction).ask(distributions)
            job = plan_overrides(impl.hydra_context.config_loader, impl.config,
                                 overrides_of(trial.params, fixed, fixed_overrides), impl.launcher.task_function)
        storage = impl.storage or "none (in memory: a search cannot be resumed)"
        print("\n".join([
            f"# search: Optuna, {impl.n_trials} trials, {impl.n_jobs} at a time, sampler {sampler_text(impl.sampler, impl.config)}",
            f"# study: {impl.study_name or '(unnamed)'}, storage: {storage}",
            f"# objective: {direction} {job.config['objective']['metric']}",
            "# space:", *space_text(distributions),
            f"# checked: {checked} jobs (every choice, both ends of every range) plan and validate",
            "# the first trial:",
        ]))
        dry_run([job])


def register() -> None:
    """Hydra finds plugins in its `hydra_plugins` package; this one is registered by hand (runner.app), as
    runner/launcher.py's are."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(OptunaSearch)
