"""A one-line progress display for long stages, fed by the lines a stage prints.

On a terminal the line redraws in place; elsewhere (CI, Modal logs) it prints a line every ~10 %.
"""

from __future__ import annotations

import re
import sys
import time

TQDM = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
PERCENT = re.compile(r"\d+%\|")   # tqdm's "12%|": what comes before it is the bar's description


class StageProgress:
    def __init__(self, stage: str, stream=None, label: str | None = None):
        self.stage = stage
        self.stream = stream or sys.stderr
        # jobs side by side (label set) print lines: redrawing one line in place would mix them up
        self.tty = self.stream.isatty() and label is None
        self.prefix = f"{label} " if label else ""
        self.started = time.monotonic()
        self.step = self.total = 0
        self.main = False   # the trainer's own bar has shown
        self.eta = ""
        self.loss: float | None = None
        self._last_reported_tenth = -1
        self._last_draw = 0.0

    def feed(self, line: str) -> None:
        """A tqdm line. The trainer's bar has no description; data work has one ("Tokenizing Prompts: ",
        "Saving the dataset", "Loading weights"). Named bars show until the trainer's appears (a train
        stage that tokenises first), then only the trainer's; the eval bars inside training are smaller."""
        match = TQDM.search(line)
        if not match:
            return
        step, total = int(match.group(1)), int(match.group(2))
        named = any(c.isalpha() for c in PERCENT.split(line[: match.start()])[0])
        if named and self.main:
            return
        if not named and not self.main:
            self.main, self.total = True, 0   # the trainer's bar takes over from the data work's
        if total >= self.total:  # nested bars (eval within training, shards within loading) stay out
            self.step, self.total, self.eta = step, total, match.group(4)
            self._draw()

    def record(self, values: dict) -> None:
        if "loss" in values:
            self.loss = float(values["loss"])

    def _draw(self) -> None:
        text = self.line()
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw > 0.2 or self.step == self.total:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self._last_draw = now
        elif self.total:
            tenth = self.step * 10 // self.total
            if tenth != self._last_reported_tenth:
                self._last_reported_tenth = tenth
                self.stream.write(text + "\n")
                self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        parts = [f"  {self.prefix}{self.stage:<10}"]
        if self.total:
            width = 24
            filled = width * self.step // self.total
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {self.step}/{self.total}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        parts.append(f"{elapsed:.0f}s" + (f" (eta {self.eta})" if self.eta and self.eta != "?" else ""))
        return "  ".join(parts)

    def done(self, state: str) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"  {self.prefix}{self.stage:<10}  {state} in {elapsed:.0f}s\n")
        self.stream.flush()
