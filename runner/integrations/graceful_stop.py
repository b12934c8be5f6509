"""axolotl plugin: SIGTERM or SIGHUP ends training at the next optimizer step, with a checkpoint.

The runner listens for SIGTERM and SIGHUP (runner/signals.py: `timeout`, systemd, container stops, Slurm's
preemption, a closed terminal) and passes SIGTERM on to the train stage's process. Without this plugin the
trainer died mid-step and a resumed run went back to its last scheduled checkpoint; with it the step in
flight finishes, a checkpoint is saved (`runs resume` continues from it) and training stops. The runner
adds it to every run's `plugins` (runner/plan.py).
"""

from __future__ import annotations

import signal
import sys

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopOnSignal(TrainerCallback):
    def __init__(self) -> None:
        self.received: str | None = None

    def _note(self, signum: int, frame) -> None:
        self.received = signal.Signals(signum).name

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            for signum in SIGNALS:
                signal.signal(signum, self._note)
        except ValueError:   # not the main thread: leave the default handlers
            pass
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            # printed: the stage log keeps it whatever logging axolotl configured
            print(f"graceful_stop: {self.received} received: saving a checkpoint at step {state.global_step} "
                  "and stopping", file=sys.stderr, flush=True)
            control.should_save = True
            control.should_training_stop = True
        return control


class GracefulStopPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [StopOnSignal()]
