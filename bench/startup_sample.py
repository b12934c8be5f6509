"""Where a process's start-up goes, without a profiler's distortion: a thread samples the main thread's
stack every few milliseconds (cProfile's per-call cost inflates a start-up of many small calls 2–3×).

    python bench/startup_sample.py OUT.txt [--interval 0.005] [--until FUNC] [--exit] [--prefetch M1,M2] -m MODULE ARGS...

Runs MODULE as `python -m` would, in this process. Sampling stops when a frame of FUNC (default
`training_step`, the first optimizer step of a transformers Trainer) is first seen, or when the module
returns (--exit: then ends the process). OUT.txt gets the wall time to that point, then functions by inclusive share of the samples (the
time a function was on the stack, as cumulative time in a profile), then by own share, and OUT.folded the
stacks in flame-graph form (`flamegraph.pl OUT.folded`). Also written: the time of the first sample inside
each top-level package import (`import torch` etc.), read from importlib's frames, and the modules loaded
by then, counted by top-level package (each one a file the import system found and read).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import runpy
import sys
import threading
import time

STARTED = time.perf_counter()
GC_TIME = {0: 0.0, 1: 0.0, 2: 0.0}
GC_COUNT = {0: 0, 1: 0, 2: 0}
_gc_started = [0.0]


def _time_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_TIME[info["generation"]] += time.perf_counter() - _gc_started[0]
        GC_COUNT[info["generation"]] += 1


gc.callbacks.append(_time_gc)


def _frame_name(frame) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "/tmp/site/", "dist-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{code.co_name} ({path}:{code.co_firstlineno})"


class Sampler(threading.Thread):
    def __init__(self, interval: float, until: str, out: str, exit_after: bool):
        super().__init__(daemon=True, name="startup-sampler")
        self.out = out
        self.exit_after = exit_after
        self.interval = interval
        self.until = until
        self.main_id = threading.main_thread().ident
        self.stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.imports: dict[str, float] = {}
        self.samples = 0
        self.reached: float | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            frame = sys._current_frames().get(self.main_id)
            now = time.perf_counter() - STARTED
            stack = []
            while frame is not None:
                stack.append(frame)
                frame = frame.f_back
            stack.reverse()
            names = tuple(_frame_name(f) for f in stack)
            self.stacks[names] += 1
            self.samples += 1
            for f in stack:
                if f.f_code.co_name == "_find_and_load":
                    module = f.f_locals.get("name")
                    if isinstance(module, str):
                        top = module.split(".")[0]
                        self.imports.setdefault(top, now)
                    break
            if any(f.f_code.co_name == self.until for f in stack):
                self.reached = now
                self.report(self.out)
                if self.exit_after:
                    for finder in sys.meta_path:   # what an ordinary exit would write (runner.stages.import_bundle)
                        if type(finder).__name__ == "Bundle":
                            print(f"import bundle: {finder.served} modules served, {len(finder.recorded)} recorded, "
                                  f"written: {finder.write()}", file=sys.stderr, flush=True)
                    os._exit(0)
                return
            time.sleep(self.interval)

    def report(self, out: str) -> None:
        self.stopped.set()
        wall = self.reached if self.reached is not None else time.perf_counter() - STARTED
        total = max(1, sum(self.stacks.values()))
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        for names, count in self.stacks.items():
            for name in set(names):
                inclusive[name] += count
            if names:
                own[names[-1]] += count
        lines = [f"wall to {'first ' + self.until if self.reached is not None else 'exit'}: {wall:.2f} s, "
                 f"{self.samples} samples",
                 "garbage collections: " + ", ".join(f"gen {g}: {GC_COUNT[g]} in {GC_TIME[g]:.2f} s" for g in GC_TIME), "", "first sample inside each top-level import (s):"]
        lines += [f"  {t:7.2f}  {m}" for m, t in sorted(self.imports.items(), key=lambda kv: kv[1])]
        modules = collections.Counter(name.split(".")[0] for name in list(sys.modules))
        lines += ["", f"modules loaded: {sum(modules.values())}, by top-level package:"]
        lines += ["  " + ", ".join(f"{m} {n}" for m, n in modules.most_common(40))]
        lines += ["", "inclusive (share of samples × wall = seconds on the stack):"]
        lines += [f"  {c / total * wall:7.2f} s  {c / total:6.1%}  {n}" for n, c in inclusive.most_common(120)]
        lines += ["", "own:"]
        lines += [f"  {c / total * wall:7.2f} s  {c / total:6.1%}  {n}" for n, c in own.most_common(60)]
        with open(out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.splitext(out)[0] + ".folded", "w") as fh:
            for names, count in self.stacks.items():
                fh.write(";".join(n.replace(";", ",") for n in names) + f" {count}\n")


def main() -> None:
    argv = sys.argv[1:]
    if "-m" not in argv:
        sys.exit("usage: startup_sample.py OUT.txt [--interval S] [--until FUNC] -m MODULE ARGS...")
    split = argv.index("-m")
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--until", default="training_step")
    parser.add_argument("--exit", action="store_true", help="end the process once FUNC is reached")
    parser.add_argument("--prefetch", default="", help="comma-separated modules imported in a thread beside the "
                        "main one from the start (an experiment: do imports' system calls overlap?)")
    args = parser.parse_args(argv[:split])
    if args.prefetch:
        def prefetch(names: list[str]) -> None:
            started = time.perf_counter()
            for name in names:
                try:
                    __import__(name)
                except Exception as e:   # noqa: BLE001 - an experiment: say it and go on
                    print(f"prefetch: {name}: {e!r}", file=sys.stderr)
            print(f"prefetch: {len(names)} imported in {time.perf_counter() - started:.2f} s", file=sys.stderr)

        threading.Thread(target=prefetch, args=(args.prefetch.split(","),), daemon=True).start()
    module, rest = argv[split + 1], argv[split + 2:]
    sampler = Sampler(args.interval, args.until, args.out, args.exit)
    sampler.start()
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if sampler.reached is None:
            sampler.report(args.out)


if __name__ == "__main__":
    main()
