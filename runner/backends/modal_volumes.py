"""The Modal Volumes as a stage container uses them: see what other containers committed before reading, commit
what was written (also every few minutes while a long stage runs). Outside a container (a test running a stage
function in-process) both are no-ops: the Volume is a plain folder there."""

from __future__ import annotations

import contextlib
import threading

import modal


def in_container() -> bool:
    return not modal.is_local()


def reload(*volumes: modal.Volume) -> None:
    """See what other containers committed (a stage's inputs were written by the previous stage)."""
    if in_container():
        for volume in volumes:
            volume.reload()


def commit(*volumes: modal.Volume) -> None:
    if in_container():
        for volume in volumes:
            volume.commit()


@contextlib.contextmanager
def committing_every(seconds: float, volume: modal.Volume):
    """Commit while a long stage runs, so checkpoints survive a preemption and `runs sync` sees progress."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):
                commit(volume)

    thread = threading.Thread(target=loop, daemon=True)
    if in_container():
        thread.start()
    try:
        yield
    finally:
        stop.set()
