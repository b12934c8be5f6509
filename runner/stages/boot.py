"""Run an axolotl command module with Python's cyclic garbage collector paused through its imports:

    python -m runner.stages.boot axolotl.cli.train CONFIG

Importing torch, transformers and axolotl allocates ~700 000 tracked objects, and the collector walks all
of them again on each full collection the allocations trigger (9 before a train stage's plugins load, 1 s
of the CPU default's start-up). The collector comes back on when axolotl registers the runner's start-up
plugin (runner.integrations.startup), which first freezes what the imports built out of later collections.
It also hides the optional packages the job does not use from transformers' and accelerate's availability
checks (runner.stages.unused_packages), so they are not imported at all, and serves the imports' bytecode
from one file per environment (runner.stages.import_bundle), and patches work the imports do for nothing
or again in every process (runner.stages.import_patches). Otherwise the module runs exactly as
`python -m MODULE ARGS...` would.
"""

from __future__ import annotations

import gc
import runpy
import sys

from runner.stages import import_bundle, import_patches, unused_packages

STARTUP_PLUGIN = "runner.integrations.startup.StartupPlugin"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m runner.stages.boot MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    config = _config(sys.argv[-1])
    plugins = config.get("plugins") or []
    if STARTUP_PLUGIN in (plugins if isinstance(plugins, list) else []):
        gc.disable()   # the plugin turns the collector back on; a config without it keeps it on
    if hidden := prepare_imports(config):
        print(f"start-up: not importing {', '.join(hidden)} (this job does not use them; "
              f"{unused_packages.ENV_OFF}=1 imports them)", file=sys.stderr, flush=True)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def prepare_imports(config: dict) -> list[str]:
    """A stage process's imports, before its first heavy one: served from the bytecode file, patched as they
    load, the unused packages kept out (what it hid)."""
    import_bundle.install()   # before hide_unused: its blocking finder must answer first
    import_patches.install()   # in front of both: it finds its modules through them
    return unused_packages.hide_unused(config)


def _config(config_file: str) -> dict:
    import yaml

    try:
        with open(config_file, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


if __name__ == "__main__":
    main()
