"""Run one stage command as a subprocess: every byte to the stage log, progress to the console, and the
trainer's metric dicts (`{'loss': ...}` lines) parsed on the way."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runner.progress import StageProgress

METRIC_DICT = re.compile(r"\{'(?:loss|eval_loss|train_runtime|train_loss)'.*?\}")
TAIL_LINES = 25
ERROR_PREFIX = "error: "
STOP_GRACE_S = 90   # for a stopped stage to save its checkpoint and exit before it is killed


@dataclass
class StageOutput:
    returncode: int
    records: list[dict] = field(default_factory=list)   # parsed trainer metric dicts, in order, each with
                                                        # `wall_s`: seconds from the process's start to its line
    tail: list[str] = field(default_factory=list)       # last lines, for the failure message
    on_record: Callable[[], None] | None = field(default=None, repr=False)   # called after each metric record

    @property
    def reason(self) -> str | None:
        """A failed stage's own one-line explanation: its last line, when that is `error: ...`.

        Stages report what the user can act on this way (a hub download, bad eval settings); anything
        else (a crash) has no reason and is shown by its tail instead.
        """
        if self.returncode != 0 and self.tail and self.tail[-1].startswith(ERROR_PREFIX):
            return self.tail[-1][len(ERROR_PREFIX):].strip() or None
        return None


def parse_metric_dict(text: str) -> dict | None:
    try:
        raw = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    values = {}
    for key, value in raw.items():
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            values[key] = value
    return values


class Standby:
    """A stage process started ahead of its turn: it does its slow start-up (imports) while an earlier
    stage runs, then waits for `go` on its stdin. `run_logged(..., standby=...)` lets it go and follows it
    like any stage; `discard()` stops it, and it exits on its own without working when its stdin closes
    (this process ended) before `go`."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None):
        self.cmd = cmd
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, cwd=cwd)

    def go(self) -> subprocess.Popen:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(GO)
            self.process.stdin.close()
        except OSError:   # it has already ended (a crash while importing): its output says why
            pass
        return self.process

    def discard(self) -> None:
        """Stop it if it still runs (it may be importing still: closing its stdin alone would wait for that)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


GO = b"go\n"


def run_logged(cmd: list[str], log_file: Path, stage: str, env: dict[str, str] | None = None,
               cwd: str | Path | None = None, label: str | None = None, standby: Standby | None = None,
               on_record: Callable[[], None] | None = None) -> StageOutput:
    """Run `cmd` (or let `standby`, started earlier with the same command, go) and follow it to the end;
    `on_record` is called after each metric line it prints (a trainer's first: its data is tokenised)."""
    progress = StageProgress(stage, label=label)
    output = StageOutput(returncode=-1, on_record=on_record)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        if env and env.get("CUDA_VISIBLE_DEVICES") is not None:
            log.write(f"# CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}\n".encode())
        log.flush()
        started = time.monotonic()
        process = standby.go() if standby is not None else subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)
        try:
            _follow(process, log, progress, output, tail, started)
        except KeyboardInterrupt as e:   # stop the stage's process too (it may not share our Ctrl-C or SIGTERM)
            stop(process, drain=lambda: _follow(process, log, progress, output, tail, started))
            e.records = output.records   # type: ignore[attr-defined] - a resumed train keeps the steps done
            raise
        output.returncode = process.wait()
    output.tail = list(tail)
    progress.done("ok" if output.returncode == 0 else f"failed (exit {output.returncode})")
    return output


def stop(process: subprocess.Popen, drain: Callable[[], None] = lambda: None) -> None:
    """SIGTERM to a stage's process (a trainer finishes its step and saves a checkpoint first:
    runner/integrations/graceful_stop.py), its output still copied to the log by `drain` meanwhile; SIGKILL
    after STOP_GRACE_S (or a second Ctrl-C); then whatever processes it had started and left behind (a
    signal that reached the runner alone must not leave orphans training on)."""
    import threading

    try:
        import psutil

        descendants = psutil.Process(process.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing (the core install) or the process already gone
        descendants = []

    def kill_all() -> None:
        for child in [process, *descendants]:
            try:
                child.kill()
            except Exception:  # noqa: BLE001 - it has ended already
                pass

    process.terminate()
    deadline = threading.Timer(STOP_GRACE_S, kill_all)
    deadline.start()
    try:
        drain()
    except KeyboardInterrupt:   # asked twice: stop now
        kill_all()
    finally:
        deadline.cancel()
        process.wait()
        kill_all()


def _follow(process: subprocess.Popen, log, progress: StageProgress, output: StageOutput, tail: deque[str],
            started: float) -> None:
    """Copy the stage's output to its log as it comes, feeding the progress line and the metric records
    (stage processes write unbuffered: a line's arrival is when it was printed)."""
    assert process.stdout is not None
    pending = b""
    while True:
        chunk = process.stdout.read1(65536) if hasattr(process.stdout, "read1") else process.stdout.read(4096)
        if not chunk:
            break
        log.write(chunk)
        log.flush()
        pending += chunk
        # tqdm redraws with \r; split on both so progress updates arrive as they happen
        *lines, pending = re.split(rb"[\r\n]", pending)
        for raw in lines:
            _handle_line(raw.decode(errors="replace"), progress, output, tail, started)
    if pending:
        _handle_line(pending.decode(errors="replace"), progress, output, tail, started)


def _handle_line(line: str, progress: StageProgress, output: StageOutput, tail: deque[str], started: float) -> None:
    if not line.strip():
        return
    if not TQDM_ONLY.match(line):
        tail.append(line.rstrip())
    for match in METRIC_DICT.finditer(line):
        values = parse_metric_dict(match.group(0))
        if values:
            values["wall_s"] = round(time.monotonic() - started, 2)
            output.records.append(values)
            progress.record(values)
            if output.on_record is not None:
                output.on_record()
    progress.feed(line)


TQDM_ONLY = re.compile(r"^\s*[^|]*\d+%\|")
