"""The runner's Hydra callbacks (conf/config.yaml registers them under hydra.callbacks).

    SweepSummary   at the end of a sweep (`-m`): its table (every job, objective, launcher, where; the best
                   marked), its report page, and the exit status: 1 when a job failed

Hydra makes one callback object per run of the app, and hands it to the sweeper and the launcher in their
HydraContext: the runner's launchers tell it that the sweep started and how their jobs ended (`note_launch`),
so nothing outlives the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.launched = False   # a sweep of dry runs launches nothing
        self.exit_code = 0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """After a sweep that launched (a sweep that stopped with an error or an interrupt says so itself):
        its table and report, and exit 1 when a job failed."""
        if sys.exc_info()[0] is not None:   # called from Hydra's `finally`: the error or interrupt goes on
            return
        if self.launched:   # the sweep's folder was fixed by runner/launcher.py: note_sweep
            sweep_dir = Path(str(config.hydra.sweep.dir))
            self.exit_code = max(self.exit_code, print_sweep(Path(str(config.runs_root)), sweep_dir))
        if self.exit_code:
            raise SystemExit(self.exit_code)   # runner.app.main returns it: Hydra's callbacks pass it on


def note_launch(hydra_context: Any, exit_code: int = 0) -> None:
    """The sweep launched jobs (its folder is made), and a batch of them ended with this exit code (1: a
    job failed): the sweep's summary shows them and exits with it."""
    for callback in hydra_context.callbacks.callbacks:
        if isinstance(callback, SweepSummary):
            callback.launched = True
            callback.exit_code = max(callback.exit_code, exit_code)


def sweep_report(runs_root: Path, sweep_dir: Path) -> str:
    """The sweep's report page (<sweep>/report/index.html), or why there is none."""
    from runner.errors import UserError
    from runner.reportpage import resolve_targets, write_report

    try:
        folders, title, _ = resolve_targets(Path(runs_root), [str(sweep_dir)])
        return f"report: {write_report(folders, title, Path(sweep_dir) / 'report')}"
    except ImportError as e:
        return f"report: not written ({e.name} is not installed: pip install matplotlib)"
    except (UserError, OSError) as e:
        return f"report: not written ({e})"


def print_sweep(runs_root: Path, sweep_dir: Path) -> int:
    """The sweep's table and report; 1 when a job failed, else 0."""
    from runner.sweeps import record, table

    rows = record(runs_root, sweep_dir)
    if not rows or all(row["status"] == "submitted" for row in rows):   # detached: the run ids are the output
        return 0
    print("\n" + table(rows) + f"\nsweep: {sweep_dir}")
    print(sweep_report(runs_root, sweep_dir))
    return 1 if any(row["status"].startswith("failed") for row in rows) else 0
