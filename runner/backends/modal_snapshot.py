"""Memory snapshots of the Modal stage containers (`enable_memory_snapshot`): a container restores its
process after the imports below instead of running them.

They are the container's own imports (the pipeline, run folders, stage logging, the card check): no torch, so
no CUDA state is in the snapshot, as Modal requires for a snapshot taken without a GPU. The stage itself runs in
a subprocess (axolotl, runner.stages.*) whose start-up — the 11–16 s of a train stage on an H100, against 0.3 s
for these — a process snapshot cannot hold (bench/RESULTS.md §13).
"""

from __future__ import annotations

import importlib

import modal

CONTAINER_MODULES = ("runner.pipeline", "runner.runfolder", "runner.stages.logged", "runner.backends.placement")


def import_container_modules() -> list[str]:
    return [importlib.import_module(name).__name__ for name in CONTAINER_MODULES]


class SnapshotStage:
    """The base of every stage class (declared with `enable_memory_snapshot=True`)."""

    @modal.enter(snap=True)
    def import_before_snapshot(self) -> None:
        import_container_modules()
