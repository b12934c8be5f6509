"""The runner's Hydra sweeper and launcher (`hydra/sweeper=runner`, `hydra/launcher=runner`, the defaults).

    RunnerSweeper   Hydra's grid (BasicSweeper) that plans and validates every job of the sweep before
                    the sweep folder exists or any job starts, and prints a dry run without running one.
    RunnerLauncher  hands a batch of planned jobs to the backend they were placed on (runner.backends):
                    one after another here, or side by side on Modal.

A sweep keeps Hydra's record of itself, `<runs_root>/_sweeps/<time>/multirun.yaml`; each job's run folder
is made by the backend, after validation, under the runs root as for a single run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

# The outcome of the last sweep or run launched in this process (runner.app reads the exit code).
outcome: dict[str, Any] = {"exit_code": 0}


def register_plugins() -> None:
    """Hydra finds plugins in its `hydra_plugins` package; ours live here, so they are registered by hand
    (the configs naming them are in runner/hydra_conf.py)."""
    from hydra.core.plugins import Plugins

    for plugin in (RunnerSweeper, RunnerLauncher):
        Plugins.instance().register(plugin)


def plan_overrides(config_loader: Any, config: DictConfig, overrides: Sequence[str]) -> Any:
    """One job of a sweep, composed by Hydra's loader and planned (validated) by the runner."""
    from runner.compose import from_hydra, shown_overrides
    from runner.plan import plan_composed

    job_config = config_loader.load_sweep_config(config, list(overrides))
    return plan_composed(from_hydra(job_config, shown_overrides(overrides)))


class RunnerSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from runner.backends import check_one_backend, dry_run

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        # every job is planned (composed, validated, placed) before anything is created or started
        planned = {tuple(job): plan_overrides(self.hydra_context.config_loader, self.config, job)
                   for batch in self.overrides for job in batch}
        jobs = list(planned.values())
        if all(job.config.get("dry_run") for job in jobs):
            outcome["exit_code"] = dry_run(jobs)
            return []
        check_one_backend(jobs)
        if isinstance(self.launcher, RunnerLauncher):
            self.launcher.planned = planned
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, index = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            returns.append(self.launcher.launch(batch, initial_job_idx=index))
            index += len(batch)
        return returns


class RunnerLauncher(Launcher):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.planned: dict[tuple[str, ...], Any] = {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.backends import run_jobs

        assert self.config is not None and self.hydra_context is not None
        jobs = [self.planned.get(tuple(o)) or plan_overrides(self.hydra_context.config_loader, self.config, o)
                for o in job_overrides]
        code = run_jobs(jobs)
        outcome["exit_code"] = max(outcome["exit_code"], code)
        returns = []
        for overrides in job_overrides:
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = code   # a failed job is reported by the backend; the sweep goes on
            returns.append(ret)
        return returns
