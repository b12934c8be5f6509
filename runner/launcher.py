"""The runner's Hydra sweeper and launchers. The `backend` group picks the launcher (`hydra/launcher=...`
underneath); runner/hydra_conf.py holds their configs.

    RunnerSweeper          hydra/sweeper=runner, the grid: Hydra's BasicSweeper that plans and validates
                           every job before the sweep folder exists or any job starts, and prints a sweep
                           of dry runs without running one. (hydra/sweeper=optuna: Hydra's Optuna plugin
                           with the runner's checks first, runner/search.py.)
    RunnerLauncher         hydra/launcher=runner (backend=auto): each job where it was placed
    LocalLauncher          hydra/launcher=runner_local (backend=local): this machine, side by side on its GPUs
    ModalLauncher          hydra/launcher=runner_modal (backend=modal): Modal, each job on its own GPUs
    SlurmLauncher          hydra/launcher=runner_slurm (backend=slurm): Hydra's submitit launcher, with each
                           job's Slurm resources derived from its own gpu option and backend settings
    SubmititLocalLauncher  hydra/launcher=runner_submitit_local: the same through submitit's local
                           executor (processes on this machine), to try a Slurm set-up without a cluster

Each job's launch (launcher, sweep, job number, host, devices) goes into its job.json, and each job returns
its objective (`objective.metric` of its metrics.json), which is what Optuna optimises.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher import config as submitit_config
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as submitit_plugin
from omegaconf import DictConfig, OmegaConf


def register_plugins() -> None:
    """Hydra finds plugins in its `hydra_plugins` package; ours live here, so they are registered by hand."""
    from hydra.core.plugins import Plugins

    for plugin in (RunnerSweeper, RunnerLauncher, LocalLauncher, ModalLauncher, SlurmLauncher, SubmititLocalLauncher):
        Plugins.instance().register(plugin)


def note_sweep(config: DictConfig, hydra_context: HydraContext) -> Path:
    """Make the sweep's folder with Hydra's record of it (once), and tell the sweep's summary (a Hydra
    callback, runner/callbacks.py) that it launched.

    The folder's name holds the time (`${now:...}`): it is fixed here, so every job and every batch of
    the sweep (and submitit's folder inside it) uses one folder."""
    from omegaconf import read_write

    from runner.callbacks import note_launch

    sweep_dir = Path(str(config.hydra.sweep.dir))
    with read_write(config), read_write(config.hydra), read_write(config.hydra.sweep):
        config.hydra.sweep.dir = str(sweep_dir)
    if not (sweep_dir / "multirun.yaml").exists():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
    note_launch(hydra_context)
    return sweep_dir


def plan_overrides(config_loader: Any, config: DictConfig, overrides: Sequence[str], task_function: Any) -> Any:
    """One job of a sweep, composed by Hydra's loader and planned (validated, placed) by the runner; its
    overrides as the user typed them come with the app's task function (runner.app.RunOneJob)."""
    from runner.compose import from_hydra, shown_overrides
    from runner.plan import plan_composed

    job_config = config_loader.load_sweep_config(config, list(overrides))
    return plan_composed(from_hydra(job_config, shown_overrides(overrides, getattr(task_function, "translated", []))))


class RunnerSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from runner.backends import check_sweep, dry_run
        from runner.sweeps import check_objective

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        # every job is planned (composed, validated, placed) before anything is created or started
        task_function = getattr(self.launcher, "task_function", None)
        planned = {tuple(job): plan_overrides(self.hydra_context.config_loader, self.config, job, task_function)
                   for batch in self.overrides for job in batch}
        jobs = list(planned.values())
        for job in jobs:   # the table compares the jobs by it: a name no job can write is a typo
            check_objective(job.config, strict=False)
        if all(job.config.get("dry_run") for job in jobs):
            dry_run(jobs)
            return []
        check_sweep(jobs)
        if hasattr(self.launcher, "planned"):
            self.launcher.planned = planned
        note_sweep(self.config, self.hydra_context)
        returns, index = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            returns.append(self.launcher.launch(batch, initial_job_idx=index))
            index += len(batch)
        return returns


class RunnerLauncher(Launcher):
    """backend=auto: hands each batch of planned jobs to the backend they were placed on."""

    name = "runner"

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.planned: dict[tuple[str, ...], Any] = {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def plan(self, overrides: Sequence[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None
        return self.planned.get(tuple(overrides)) or plan_overrides(self.hydra_context.config_loader, self.config, overrides,
                                                                    self.task_function)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.backends import exit_code, run_jobs
        from runner.callbacks import note_launch
        from runner.errors import UserError, report
        from runner.sweeps import launch_info, objective_value

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = note_sweep(self.config, self.hydra_context)
        jobs, values = [], {}
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            try:
                job = self.plan(overrides)
            except UserError as e:   # an Optuna trial outside what the runner accepts: that trial fails
                report(UserError(f"job {number} ({' '.join(filter_overrides(overrides))}): {e}"))
                values[number] = None
                continue
            # a copy per job number: a sweep may hold the same job twice (gpu=a100,a100)
            jobs.append((number, replace(job, launch=launch_info(self.name, sweep_dir, number))))
        if jobs:
            outcomes = run_jobs([job for _, job in jobs])
            note_launch(self.hydra_context, exit_code(outcomes))
            for (number, job), result in zip(jobs, outcomes):
                values[number] = (objective_value(result.metrics, job.config["objective"]["metric"])
                                  if result.state == "succeeded" else None)
        returns = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = values.get(number)   # None: a failed job (Optuna records a failed trial)
            returns.append(ret)
        return returns


class LocalLauncher(RunnerLauncher):
    """backend=local: this machine (one job after another on the CPU, side by side on its GPUs)."""

    name = "runner_local"


class ModalLauncher(RunnerLauncher):
    """backend=modal: Modal, up to backend.max_parallel jobs at once, each on its own GPUs."""

    name = "runner_modal"


def queue_settings(executor: str) -> frozenset[str]:
    """The settings a submitit executor (slurm, local) takes, as Hydra's submitit plugin declares them."""
    return frozenset(getattr(submitit_config, f"{executor.capitalize()}QueueConf").__dataclass_fields__)


def submitit_resources(job: Any, executor: str) -> dict[str, Any]:
    """A job's submitit parameters from its own gpu option and backend settings."""
    backend = job.config["backend"]
    gpus = job.compute.processes if job.compute.gpu_string else 0
    per = max(gpus, 1)
    resources = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": gpus, "cpus_per_task": int(backend["cpus_per_gpu"] * per),
                 "mem_gb": int(backend["mem_gb_per_gpu"] * per), "timeout_min": int((backend.get("timeout_h") or 12) * 60),
                 "name": f"runner-{job.choices.get('model')}-{job.choices.get('adapter')}"}
    if backend.get("partition") and "partition" in queue_settings(executor):   # Slurm's; not submitit's local
        resources["partition"] = backend["partition"]
    return resources


class _PerJobResources:
    """Hydra's submitit launcher, but each job asks for its own resources: jobs are grouped by what they
    need and each group is submitted with its parameters (anything set under hydra.launcher wins)."""

    name = "submitit"
    _EXECUTOR: str

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)   # type: ignore[call-arg]
        self.planned: dict[tuple[str, ...], Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """On the node: the job (its task function, pickled with this launcher, carries the command line as
        the user wrote it for its records). Preempted, it saves a checkpoint and is requeued (submitit calls
        `checkpoint`: this same call again), and the call that starts again continues the run's folder
        (runner/runfolder.py: earlier_attempt)."""
        from runner import signals

        with signals.requeued_on_preemption():
            return super().__call__(*args, **kwargs)   # type: ignore[misc]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = note_sweep(self.config, self.hydra_context)
        if str(self.params["submitit_folder"]).endswith("/.submitit/%j"):   # Hydra's default, resolved earlier
            self.params["submitit_folder"] = str(sweep_dir / ".submitit" / "%j")
        init_keys = {"submitit_folder", "max_num_timeout", "python"}
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        set_by_user = {k: v for k, v in self.params.items() if v is not None and k not in init_keys}
        groups: dict[tuple, list[tuple[int, list[str]]]] = {}
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            job = self.planned.get(tuple(overrides)) or plan_overrides(self.hydra_context.config_loader, self.config,
                                                                       overrides, self.task_function)
            params = {**submitit_resources(job, self._EXECUTOR), **set_by_user}
            groups.setdefault(tuple(sorted(params.items(), key=lambda kv: kv[0])), []).append((number, list(overrides)))
        submitted = {}
        for params, members in groups.items():
            init = {"folder": self.params["submitit_folder"],
                    **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in init_keys - {"submitit_folder"}
                       and v is not None}}
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
            executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params})
            state = Singleton.get_state()
            jobs = executor.map_array(self, *zip(*[(overrides, "hydra.sweep.dir", number, f"job_id_for_{number}", state)
                                                   for number, overrides in members]))
            submitted.update({number: job for (number, _), job in zip(members, jobs)})
        return [submitted[number].results()[0] for number in range(initial_job_idx, initial_job_idx + len(job_overrides))]


class SlurmLauncher(_PerJobResources, submitit_plugin.SlurmLauncher):
    name = "runner_slurm"


class SubmititLocalLauncher(_PerJobResources, submitit_plugin.LocalLauncher):
    name = "runner_submitit_local"
