"""axolotl plugin: packing a dataloader without five full garbage collections.

axolotl 0.19's MultipackBatchSampler ends every packing pass (`generate_batches`) with `gc.collect()`,
and a sampler's `len()` packs 1 + num_count_samples (4) times. Every packed dataloader (the train-steps
estimate, the eval estimate, the train dataloader, and each in-training evaluation's) so paid five full
collections of the trainer's process: with torch, transformers and axolotl imported, ≈ 640 000 tracked
objects, 0.37 s a collection on this project's 2-core machine, and 2.5–3.5 s a dataloader on the H200
machine — about 20 s of the default 7B job's train stage, eight dataloaders (bench/RESULTS.md §11). The
collections free nothing the sampler needs: its lists go by reference counting when dropped, and Python's
own generational collection still runs.

Listed under `plugins` by the packing recipe; it patches when axolotl registers plugins, before any data
is loaded. (The full collections axolotl still runs, after each checkpoint save and at the end, stay short:
runner.integrations.startup freezes the set-up's objects out of their reach.)
"""

from __future__ import annotations

import gc
import logging

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger(__name__)


class _GcWithoutCollect:
    """The `gc` module as axolotl's sampler module sees it: everything but `collect`, which does nothing."""

    skips_collect = True

    def __getattr__(self, name: str):
        return getattr(gc, name)

    @staticmethod
    def collect(generation: int = 2) -> int:
        return 0


def skip_sampler_gc() -> bool:
    """Point the sampler module's `gc` at one without `collect`; False if it already is."""
    from axolotl.utils.samplers import multipack

    if getattr(multipack.gc, "skips_collect", False):
        return False
    multipack.gc = _GcWithoutCollect()
    return True


def restore_sampler_gc() -> None:
    from axolotl.utils.samplers import multipack

    multipack.gc = gc


class PackingGcPlugin(BasePlugin):
    def register(self, cfg):
        if skip_sampler_gc():
            LOG.info("packing_gc: the multipack sampler no longer runs gc.collect() after every packing pass")
