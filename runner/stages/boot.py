"""Run an axolotl command module with Python's cyclic garbage collector paused through its imports:

    python -m runner.stages.boot axolotl.cli.train CONFIG

Importing torch, transformers and axolotl allocates ~700 000 tracked objects, and the collector walks all
of them again on each full collection the allocations trigger (9 before a train stage's plugins load, 1 s
of the CPU default's start-up). The collector comes back on when axolotl registers the runner's start-up
plugin (runner.integrations.startup), which first freezes what the imports built out of later collections.
Otherwise the module runs exactly as `python -m MODULE ARGS...` would.
"""

from __future__ import annotations

import gc
import runpy
import sys

STARTUP_PLUGIN = "runner.integrations.startup.StartupPlugin"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m runner.stages.boot MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    if STARTUP_PLUGIN in _plugins(sys.argv[-1]):   # it turns the collector back on; a config without it keeps it on
        gc.disable()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _plugins(config_file: str) -> list[str]:
    import yaml

    try:
        with open(config_file, encoding="utf-8") as fh:
            plugins = (yaml.safe_load(fh) or {}).get("plugins") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    return plugins if isinstance(plugins, list) else []


if __name__ == "__main__":
    main()
