"""SIGTERM and SIGHUP stop a run as Ctrl-C does.

`timeout`, systemd, container stops and Slurm's preemption send SIGTERM; a closed terminal sends SIGHUP.
Without a handler Python dies at once and the run's status.json says `running` forever. `install()` turns
either signal into `Stopped`, a KeyboardInterrupt: the stage's process is stopped, the run is marked
`interrupted` with the signal named (runner/pipeline.py), and the command exits 128 + the signal's number
(143 for SIGTERM, 129 for SIGHUP), as a shell reports a process the signal killed.

On a Slurm node (Hydra's submitit launcher; submitit's local executor alike) `requeued_on_preemption()` does
the same for submitit's preemption signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL names another; Slurm sends
it when it preempts the job, and before its time limit), then lets submitit requeue the job: the same job
starts again and continues its run folder from the checkpoint (runner/backends/local.py: run_job).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.signum = signum
        self.exit_code = 128 + signum


def _raise(signum: int, frame) -> None:
    raise Stopped(signum)


def install() -> None:
    """Handle SIGTERM and SIGHUP in this process (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _raise)


@contextmanager
def requeued_on_preemption() -> Iterator[None]:
    """Inside: submitit's preemption signal stops the run as SIGTERM does (the trainer saves a checkpoint,
    the run is marked `interrupted` with the signal named); then submitit's own handler, installed when the
    job started, checkpoints the job (the launcher's `checkpoint`: the same call again) and requeues it."""
    from submitit import JobEnvironment

    signum = JobEnvironment._usr_sig()
    requeue = signal.getsignal(signum)
    if not callable(requeue) or threading.current_thread() is not threading.main_thread():
        yield   # not started by submitit: nothing to hand the signal on to
        return
    signal.signal(signum, _raise)
    try:
        yield
    except Stopped as e:
        if e.signum != signum:
            raise
        signal.signal(signum, requeue)
        requeue(signum, None)   # submitit: requeued, this process exits (or it raises why it could not)
        raise
    finally:
        signal.signal(signum, requeue)


def signal_name(error: BaseException) -> str | None:
    return getattr(error, "signal_name", None)
