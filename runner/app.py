"""`runner` (or `python -m runner`): the command line, a Hydra application.

    runner [--multirun|-m] [group=option ...] [key=value ...]
    runner --cfg job|hydra|all [--resolve] [--package PKG] ...   runner --info defaults-tree|config|searchpath
    runner --help    runner --config-dir MY_CONF experiment=mine    runner --shell-completion install=bash

Hydra parses the flags (its own parser, on the command line as given: sys.argv is left alone), composes
conf/config.yaml (plus a user's --config-dir or hydra.searchpath), sweeps with `-m` and launches. The task
function runs one job; a sweep goes through the runner's sweeper, which validates every job before any
starts, and its launcher, which hands the jobs to their backend (runner/launcher.py); a Hydra callback
ends it (runner/callbacks.py). Before Hydra sees the arguments, runner.compose.translate rewrites the
overrides alone: `key=value` may name any axolotl key, and group options are checked with suggestions. Every mistake is one line, `error: ...`, exit
code 2, no traceback, nothing created; --cfg, --info and --help create nothing either.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

from runner import signals
from runner.compose import Translated, config_dirs, setup, translate
from runner.errors import UserError, report, unknown
from runner.launcher import register_plugins
from runner.paths import CONF_DIR, EXPERIMENTS_DIR
from runner.search import register as register_search

PROGRAM = "runner"
# Hydra's own errors about flags that do not go together
FLAG_ERRORS = ("Only one of --run, --multirun, --cfg, --info and --shell_completion", "The --resolve flag")


@dataclass
class Arguments:
    flags: list[str] = field(default_factory=list)       # Hydra's, passed on as they are
    overrides: list[str] = field(default_factory=list)   # the user's key=value and group=option
    multirun: bool = False
    config_dirs: list[str] = field(default_factory=list)
    as_is: bool = False     # shell completion and --version: Hydra gets the arguments untouched


@dataclass(frozen=True)
class HydraFlags:
    """Hydra's own flags, read from its argument parser: which take a value, which are switches, and --info
    (one of its choices, or none)."""

    values: frozenset[str]
    switches: frozenset[str]
    info: tuple[str, ...]
    info_choices: tuple[str, ...]

    @classmethod
    def of(cls, parser: Any) -> HydraFlags:
        actions = [action for action in parser._actions if action.option_strings]
        (info,) = [action for action in actions if action.nargs == "?"]
        return cls(frozenset(s for action in actions if action.nargs is None for s in action.option_strings),
                   frozenset(s for action in actions if action.nargs == 0 for s in action.option_strings),
                   tuple(info.option_strings), tuple(info.choices))


def hydra_parser() -> Any:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = PROGRAM   # its usage and errors name the runner, as the console script
    return parser


def parse(argv: list[str]) -> Arguments:
    """The flags as Hydra's parser declares them, and the overrides apart: the runner rewrites those alone."""
    flags = HydraFlags.of(hydra_parser())
    args = Arguments()
    items = iter(argv)
    for item in items:
        name, eq, inline = item.partition("=") if item.startswith("--") else (item, "", "")
        if name in flags.values:
            value = inline if eq else next(items, None)
            if value is None:
                raise UserError(f"option '{name}' needs a value")
            args.flags += [name, value]
            if name in ("--config-dir", "-cd"):
                if not Path(value).is_dir():
                    raise UserError(f"--config-dir: no such folder: {value}")
                args.config_dirs.append(value)
        elif name in flags.info:
            args.flags.append(item)
            if not eq:
                following = next(items, None)
                if following in flags.info_choices:
                    args.flags.append(following)
                elif following is not None:
                    args.overrides.append(following)
        elif item in flags.switches:
            args.flags.append(item)
            args.multirun |= item in ("--multirun", "-m")
            args.as_is |= item in ("--shell-completion", "-sc", "--version")
        elif item.startswith("-"):
            raise unknown("option", item, sorted(flags.values | flags.switches | set(flags.info)))
        else:
            args.overrides.append(item)
            if item.startswith("hydra.searchpath="):
                args.config_dirs += _search_path_dirs(item.partition("=")[2])
    inspecting = any(flag in args.flags for flag in ("--cfg", "-c", "--info", "-i") + ("--help", "-h"))
    if args.multirun and inspecting:
        # Hydra takes one command at a time: `-m --cfg hydra` shows the sweep's config (sweeper, launcher)
        args.flags = [flag for flag in args.flags if flag not in ("--multirun", "-m")]
        args.overrides.append("hydra.mode=MULTIRUN")
    return args


def _search_path_dirs(value: str) -> list[str]:
    items = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
    return [v.removeprefix("file://") for v in items if not v.startswith("pkg://")]


def hydra_argv(args: Arguments) -> tuple[list[str], list[Translated]]:
    """Hydra's command line (the user's flags, the overrides in Hydra's form), and the translation."""
    if args.as_is:
        return [*args.flags, *args.overrides], []
    translated = translate(args.overrides, args.multirun, config_dirs(args.config_dirs))
    return [*args.flags, *(t.hydra for t in translated)], translated


setup()   # the schema, our sweeper's and launcher's configs, resolvers: before Hydra composes anything
register_plugins()
register_search()


class RunOneJob:
    """Hydra's task: plan (validate, place) one job, run it where it was placed, return its objective.

    It runs here for a single run, and on the node for a Slurm job (Hydra's submitit launcher pickles it
    and calls it there); the runner's own launchers hand whole batches to the backends instead
    (runner/launcher.py). It carries the command line's translation (runner/compose.py: translate), so a
    job's overrides are recorded as the user typed them wherever Hydra hands it on: here, to the sweeper
    and the launchers (as their task function), and to a Slurm node."""

    def __init__(self, translated: list[Translated]):
        self.translated = translated

    def __call__(self, cfg: Any) -> float | None:
        return run_one_job(cfg, self.translated)


def run_one_job(cfg: Any, translated: list[Translated]) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from runner.backends import exit_code, run_jobs
    from runner.backends.registry import backend_named
    from runner.compose import from_hydra, shown_overrides
    from runner.plan import plan_composed
    from runner.sweeps import objective_value

    hydra_config = HydraConfig.get()
    try:
        job = plan_composed(from_hydra(cfg, shown_overrides(hydra_config.overrides.task, translated)))
        job.launch = launch_of(hydra_config)   # a fresh Job: planned here, for this run alone
        alone = job.launch["launcher"] == "run"   # not one job of a sweep
        if alone and backend_named(job.placement.backend).sweeps_only:
            raise UserError("backend=slurm submits through Hydra's submitit launcher, which Hydra uses for "
                            "sweeps: add -m (one job is a sweep of one)")
        if job.config.get("dry_run"):
            from runner.backends import dry_run

            dry_run([job])
            return None
        (result,) = run_jobs([job])
    except UserError as e:   # one line and out: not Hydra's "Error executing job ..." report
        raise SystemExit(report(e)) from None
    if alone and exit_code([result]):   # a sweep's job: the sweep's summary exits (runner/callbacks.py)
        raise SystemExit(exit_code([result]))
    return objective_value(result.metrics, job.config["objective"]["metric"]) if result.state == "succeeded" else None


def launch_of(hydra_config) -> dict:
    """job.json's `launch` for a job Hydra runs itself: a single run, or a sweep job on a submitit node."""
    from hydra._internal.utils import _locate
    from hydra.types import RunMode

    from runner.sweeps import launch_info

    if hydra_config.mode != RunMode.MULTIRUN:
        return launch_info("run")
    target = str(hydra_config.launcher._target_)
    try:
        name = getattr(_locate(target), "name", None) or target
    except ImportError:
        name = target
    return launch_info(name, hydra_config.sweep.dir, hydra_config.job.num)


def run_hydra(command: list[str], task: RunOneJob) -> None:
    """What @hydra.main does, on this command line rather than sys.argv: Hydra's own argument parser, then
    Hydra runs, shows, completes or sweeps."""
    from hydra import version
    from hydra._internal.execution_policy import execution_whitelist
    from hydra._internal.utils import _run_hydra

    version.setbase(version._UNSPECIFIED_)   # as @hydra.main without version_base
    parser = hydra_parser()
    args = parser.parse_intermixed_args(command)
    program = sys.argv[0]
    if args.shell_completion or args.hydra_help:
        # Hydra reads the program's name from sys.argv[0] alone in its shell-completion script (`complete
        # ... runner`) and --hydra-help: `python -m runner` is named as the console script is there
        sys.argv[0] = PROGRAM
    try:
        # the one target conf/config.yaml names for Hydra to instantiate (its plugins are registered above)
        with execution_whitelist(["runner.callbacks.SweepSummary"]):
            _run_hydra(args=args, args_parser=parser, task_function=task, config_path=str(CONF_DIR), config_name="config")
    finally:
        sys.argv[0] = program


def main(argv: list[str] | None = None) -> int:
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from runner.config_errors import explain

    argv = list(sys.argv[1:] if argv is None else argv)
    signals.install()   # SIGTERM and SIGHUP stop a run as Ctrl-C does
    try:
        args = parse(argv)
        command, translated = hydra_argv(args)
    except (UserError, KeyboardInterrupt) as e:
        return report(e)
    saved_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"   # Hydra raises instead of printing: the runner reports in one line
    try:
        run_hydra(command, RunOneJob(translated))
    except SystemExit as e:   # --help, argparse's own errors; a failed run or sweep (exit 1)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except (UserError, KeyboardInterrupt) as e:
        return report(e)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
        return report(UserError(explain(e, [*map(Path, args.config_dirs), CONF_DIR, EXPERIMENTS_DIR])))
    except ValueError as e:
        if str(e).startswith(FLAG_ERRORS):
            return report(UserError(str(e).splitlines()[0]))
        raise
    finally:
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    return 0
