"""A one-line progress display for long stages, fed by the lines a stage prints.

On a terminal the line redraws in place; elsewhere (CI, Modal logs) it prints a line every ~10 %.
"""

from __future__ import annotations

import re
import sys
import time

TQDM = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")


class StageProgress:
    def __init__(self, stage: str, stream=None, label: str | None = None):
        self.stage = stage
        self.stream = stream or sys.stderr
        # jobs side by side (label set) print lines: redrawing one line in place would mix them up
        self.tty = self.stream.isatty() and label is None
        self.prefix = f"{label} " if label else ""
        self.started = time.monotonic()
        self.step = self.total = 0
        self.eta = ""
        self.loss: float | None = None
        self._last_reported_tenth = -1
        self._last_draw = 0.0

    def feed(self, line: str) -> None:
        match = TQDM.search(line)
        if match:
            step, total = int(match.group(1)), int(match.group(2))
            if total >= self.total:  # ignore nested bars (tokenising, loading shards) once training shows
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
