"""Where a run's train stage spends its time: the run's own axolotl config, trained again under cProfile
with the throughput plugin (per-step times, and torch.profiler over the last steps: kernel time against
wall time, the ops that take host time).

    python bench/profile_train.py RUN_DIR OUT_DIR [--steps 60] [--profile-steps 8]

RUN_DIR is a finished runner run (its config.yml and tokenised data are reused; its outputs are left
alone). OUT_DIR gets config.yml (what was trained), train.log, throughput.jsonl, profile-*.txt (torch
profiler tables) and cprofile.txt: the process's functions by cumulative and by own time, and the
wall-clock phases (imports, set-up, steps, tail) read from the log's time stamps.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--profile-steps", type=int, default=8)
    args = parser.parse_args()
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((args.run_dir / "config.yml").read_text())
    config["output_dir"] = str(out / "outputs")
    config["max_steps"] = args.steps
    config["plugins"] = [*config.get("plugins", []), "bench.throughput_plugin.ThroughputPlugin"]
    config["save_strategy"] = "no"
    config.pop("saves_per_epoch", None)
    config_file = out / "config.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "BENCH_OUT": str(out / "throughput.jsonl"), "BENCH_RECIPE": "profiled",
           "BENCH_PROFILE": str(args.profile_steps),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    started = time.time()
    with (out / "train.log").open("w") as log:
        done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out / "train.prof"), "-m",
                               "axolotl.cli.train", str(config_file)], cwd=args.run_dir, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    wall = time.time() - started
    with (out / "cprofile.txt").open("w") as fh:
        fh.write(f"train process: {wall:.1f} s wall, exit {done.returncode}\n\n")
        if (out / "train.prof").is_file():
            stats = pstats.Stats(str(out / "train.prof"), stream=fh)
            stats.sort_stats("cumulative").print_stats(80)
            stats.sort_stats("tottime").print_stats(60)
    print(f"profile_train: {wall:.1f} s, exit {done.returncode}, {out}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
