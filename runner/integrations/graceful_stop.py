"""axolotl plugin: SIGTERM, SIGHUP or a preemption signal ends training at the next optimizer step, with a
checkpoint.

The runner listens for SIGTERM and SIGHUP (runner/signals.py: `timeout`, systemd, container stops, Slurm's
preemption, a closed terminal) and passes SIGTERM on to the train stage's process. Without this plugin the
trainer died mid-step and a resumed run went back to its last scheduled checkpoint; with it the step in
flight finishes, a checkpoint is saved (`runs resume` continues from it) and training stops. The runner
adds it to every run's `plugins` (runner/plan.py).

Slurm signals every process of a job, the trainer too: SIGTERM when it preempts or cancels it, and submitit's
preemption signal (SIGUSR2, or SUBMITIT_PREEMPT_SIGNAL) before that, whose default action would kill the
trainer mid-step. Training stopped by a signal is not a finished run: the process ends with 128 + the
signal's number and a last line `error: ...` naming the checkpoint, so the stage fails (or, where the runner
got the signal too, is interrupted) rather than saving a half-trained model as the result.
"""

from __future__ import annotations

import os
import signal
import sys

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)


def stop_signals() -> tuple[signal.Signals, ...]:
    named = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"), None)
    return SIGNALS + ((named,) if isinstance(named, signal.Signals) and named not in SIGNALS else ())


class StopOnSignal(TrainerCallback):
    def __init__(self) -> None:
        self.received: str | None = None
        self.signum = 0
        self.step = 0

    def _note(self, signum: int, frame) -> None:
        if not self.received:   # the first names it (the runner passes on SIGTERM after a preemption signal)
            self.received, self.signum = signal.Signals(signum).name, signum

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            for signum in stop_signals():
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
            self.step = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.received:   # the checkpoint is saved: end here, before axolotl saves this as the trained model
            run = os.path.basename(os.getcwd())   # a stage runs in its run folder
            print(f"error: training stopped by {self.received} at step {self.step} (checkpoint-{self.step} saved): "
                  f"`python -m runner.runs resume {run}` continues it", file=sys.stderr, flush=True)
            raise SystemExit(128 + self.signum)
        return control


class GracefulStopPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [StopOnSignal()]
