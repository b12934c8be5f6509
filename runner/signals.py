"""SIGTERM and SIGHUP stop a run as Ctrl-C does.

`timeout`, systemd, container stops and Slurm's preemption send SIGTERM; a closed terminal sends SIGHUP.
Without a handler Python dies at once and the run's status.json says `running` forever. `install()` turns
either signal into `Stopped`, a KeyboardInterrupt: the stage's process is stopped, the run is marked
`interrupted` with the signal named (runner/pipeline.py), and the command exits 128 + the signal's number
(143 for SIGTERM, 129 for SIGHUP), as a shell reports a process the signal killed.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum


def _raise(signum: int, frame) -> None:
    raise Stopped(signum)


def install() -> None:
    """Handle SIGTERM and SIGHUP in this process (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _raise)


def signal_name(error: BaseException) -> str | None:
    return getattr(error, "signal_name", None)
