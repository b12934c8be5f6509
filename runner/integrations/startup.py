"""axolotl plugin: start-up work the train stage would do twice or for nothing. In every run's `plugins`
(runner/plan.py), first; axolotl registers plugins after torch and transformers are imported and before
the trainer's own imports (peft, bitsandbytes, trl, datasets), which is where the patches below count.

1. No held-out evaluation before the first step. axolotl 0.19 turns on `eval_on_start` whenever it
   evaluates; the eval stage scores the base model on the same records (on a GPU machine while the trainer
   runs), so the trainer's copy only delayed step 1: 5 s of a 135M model's start-up on an H100 and a tenth
   of the CPU default (bench/RESULTS.md §13). The held-out curve starts at the first in-training evaluation.
2. Custom-op registration without a source lookup. Every `torch.library` fake-kernel registration records
   its caller with `inspect.getframeinfo`, which finds the caller's module among all loaded ones and reads
   its source file (bitsandbytes, axolotl and Liger register ~150 ops): the same "file:line" is read off
   the frame. runner.stages.import_patches does this as torch loads in the processes runner.stages.boot
   starts; here it covers a process started otherwise (axolotl run by hand with these plugins).
3. Full garbage collections that walk only what start-up built. Python's collector walks every tracked
   object on each full collection; importing torch, transformers, peft and axolotl leaves ~700 000, and a
   train stage ran 13 full collections before its first step (9 triggered by the imports' allocations,
   3 `gc.collect()` calls of axolotl's model loader, 1 of accelerate's): 3 s of the CPU default's start-up.
   runner.stages.boot pauses the collector through the imports; objects alive at plugin registration (when
   the collector comes back on), before the model is loaded and once the trainer exists are moved
   out of their reach (`gc.freeze()`): they are imports, data and the model, which live as long as the
   process; the collections still free whatever start-up and training create after each freeze.
4. One map of packages to distributions. transformers and trl each build
   `importlib.metadata.packages_distributions()` at import, a walk of every installed distribution's file
   list (1.5–3 s on a GPU host); trl reuses the map transformers built. Nothing installs packages while a
   stage runs, so the map cannot change.
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib.metadata
import logging
import sys

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger(__name__)


def cheap_op_sources() -> bool:
    """torch._library.utils.get_source from the frame (runner.stages.import_patches does it as torch loads
    where runner.stages.boot started the process); False if that is done already."""
    import torch._library.utils as library_utils

    from runner.stages import import_patches

    return import_patches.cheap_op_sources(library_utils)


def one_distribution_map() -> bool:
    """Make importlib.metadata.packages_distributions return the map transformers built at its import (or,
    without one, the first map built here); False if that is done already."""
    current = importlib.metadata.packages_distributions
    if getattr(current, "shared_map", False):
        return False
    built = getattr(sys.modules.get("transformers.utils.import_utils"), "PACKAGE_DISTRIBUTION_MAPPING", None)
    if isinstance(built, dict):
        @functools.wraps(current)
        def shared():
            return built
    else:
        shared = functools.cache(current)
    shared.shared_map = True
    importlib.metadata.packages_distributions = shared
    return True


def freeze_alive(when: str) -> None:
    if not gc.get_freeze_count():
        # frozen objects are never collected, not even at exit, where extensions that count their live
        # objects (triton's nanobind) would print pages of "leaked" lines after the stage's last line
        atexit.register(gc.unfreeze)
    gc.freeze()
    LOG.debug(f"startup: {gc.get_freeze_count()} objects frozen out of full collections ({when})")


class StartupPlugin(BasePlugin):
    def register(self, cfg):
        patched = [name for name, done in (("op sources", cheap_op_sources()), ("distribution map", one_distribution_map()))
                   if done]
        if patched:
            LOG.info(f"startup: {', '.join(patched)} patched")
        freeze_alive("plugins registered")
        gc.enable()   # paused through the imports by runner.stages.boot

    def pre_model_load(self, cfg):
        freeze_alive("before the model loads")

    def post_trainer_create(self, cfg, trainer):
        freeze_alive("trainer built")

    def get_training_args(self, cfg):
        return {"eval_on_start": False}
