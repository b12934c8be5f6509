"""Work a stage process's imports do for nothing or again in every process, patched as the modules load.

runner.stages.boot (train, preprocess, merge) and the eval stage install this before their first import;
each patch runs right after its module's own code, before anything else imports from it.

1. Model docstrings. transformers' `auto_docstring` builds the docstring of every model class and method
   it decorates at import, parsing argument tables (0.5 s of the H100 train stage's start-up, and more for
   each extra model family axolotl's imports pull in). A stage process never shows a docstring: the
   decorator returns what it is given, unchanged.
2. transformers' import structure. At import transformers reads each of its ~2 300 model files to list
   what each exports (0.4 s on this project's machine). The list is kept in the stage's bytecode file
   (runner.stages.import_bundle) with the times and sizes of the files it was read from; any change to
   them reads them again.
3. The sample packer's machine code. axolotl's multipack functions are numba JIT functions, compiled in
   every process that packs (0.4 s here, 0.6 s on the H100). Their compiled code goes to numba's own cache
   (NUMBA_CACHE_DIR; runner.stages.stage_env sets `<cache_dir>/numba`), which numba checks against the
   source file's time, as Python does its bytecode.

4. Custom-op registration without a source lookup. Every `torch.library` fake-kernel registration records
   its caller with `inspect.getframeinfo` and looks up the caller's module with `inspect.getmodule`, which
   resolves the path of every loaded module (~150 registrations while torch, bitsandbytes, axolotl and
   Liger load, each walking up to 5 000 modules): the same "file:line" is read off the frame, and the
   module is the one whose namespace the frame runs in. (runner.integrations.startup patches the first
   again in processes started without runner.stages.boot.)

5. One package-to-distribution map. transformers builds `importlib.metadata.packages_distributions()` at
   import by reading every installed distribution's file list and checking that each file exists (torch
   alone lists ~15 000): 1.6 s of an H100 train stage's start-up. It depends only on what is installed, as
   the bytecode file does, so it is kept there.

A patch that does not fit the installed version is skipped: the module stays as it is.
RUNNER_IMPORT_PATCHES=0 turns all of them off.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
import types
from typing import Any, Callable

ENV_OFF = "RUNNER_IMPORT_PATCHES"


def _as_is(obj: Any = None, **_options: Any) -> Any:
    """transformers' auto_docstring without the docstring: `@auto_docstring` and `@auto_docstring(...)`."""
    if obj is not None:
        return obj
    return lambda decorated: decorated


def no_docstrings(module: Any) -> bool:
    if not callable(getattr(module, "auto_docstring", None)):
        return False
    module.auto_docstring = _as_is
    return True


def tree_state(folder: str) -> str:
    """A digest of the names, times and sizes of the Python files under `folder`."""
    digest = hashlib.sha256()
    stack = [folder]
    while stack:
        path = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():
                stack.append(entry.path)
            elif entry.name.endswith(".py"):
                st = entry.stat()
                digest.update(f"{entry.path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return digest.hexdigest()


def remembered_import_structure(module: Any) -> bool:
    from runner.stages import import_bundle

    bundle = import_bundle.installed()
    original = getattr(module, "define_import_structure", None)
    if bundle is None or not callable(original):
        return False
    made: dict[str, Any] = {}   # as transformers' own lru_cache: one object per folder in a process

    @functools.wraps(original)
    def define_import_structure(module_path, prefix=None):
        folder = str(module_path) if os.path.isdir(module_path) else os.path.dirname(str(module_path))
        key = f"transformers.import_structure {folder} {prefix}"
        if key not in made:
            made[key] = bundle.remember(key, tree_state(folder), lambda: original(module_path, prefix))
        return made[key]

    module.define_import_structure = define_import_structure
    return True


def cached_packer(module: Any) -> bool:
    functions = [getattr(module, name, None) for name in ("ffd_check", "pack_group", "allocate_sequentially")]
    jitted = [f for f in functions if callable(getattr(f, "enable_caching", None))]
    for function in jitted:
        function.enable_caching()
    return bool(jitted)


def frame_source(stacklevel: int) -> str:
    """torch._library.utils.get_source's "path:line" of the caller `stacklevel` frames up, from the frame
    itself (getframeinfo's own figures, without reading the source)."""
    frame = sys._getframe(stacklevel)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def cheap_op_sources(module: Any) -> bool:
    if not callable(getattr(module, "get_source", None)) or module.get_source is frame_source:
        return False
    module.get_source = frame_source
    return True


class _InspectForFrames:
    """The `inspect` module, except that the module of a frame running a module's code from that module's file
    is read off the frame (what `inspect.getmodule` finds after resolving the path of every loaded module)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    @staticmethod
    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        if isinstance(obj, types.FrameType):
            module = sys.modules.get(obj.f_globals.get("__name__"))
            if (getattr(module, "__dict__", None) is obj.f_globals
                    and getattr(module, "__file__", None) == obj.f_code.co_filename):
                return module   # a module's code from its own file: the module inspect finds by that file
        return inspect.getmodule(obj, _filename)


def frame_modules(module: Any) -> bool:
    if getattr(module, "inspect", None) is not inspect:
        return False
    module.inspect = _InspectForFrames()
    return True


# module -> what to do once its code has run
PATCHES: dict[str, Callable[[Any], bool]] = {
    "transformers.utils.auto_docstring": no_docstrings,
    "transformers.utils.import_utils": remembered_import_structure,
    "axolotl.utils.samplers.multipack": cached_packer,
    "torch._library.utils": cheap_op_sources,
    "torch.library": frame_modules,
}


class _AfterImport:
    """A meta path finder that finds the patched modules through the finders after it and runs the patch
    once the module's code has run."""

    def __init__(self, patches: dict[str, Callable[[Any], bool]]):
        self.patches = patches
        self.applied: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        patch = self.patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            try:
                if patch(module):
                    self.applied.append(fullname)
            except Exception:  # noqa: BLE001 - a version the patch does not fit: the module as it is
                pass

        loader.exec_module = exec_module
        return spec

    def invalidate_caches(self) -> None:
        pass


def kept_distribution_map(metadata: Any) -> bool:
    from runner.stages import import_bundle

    bundle = import_bundle.installed()
    original = metadata.packages_distributions
    if bundle is None or getattr(original, "kept", False):
        return False

    @functools.wraps(original)
    def packages_distributions():
        kept = bundle.remember("importlib.metadata.packages_distributions", "", lambda: dict(original()))
        return {name: list(dists) for name, dists in kept.items()}   # the caller's own copy

    packages_distributions.kept = True
    metadata.packages_distributions = packages_distributions
    return True


def install(patches: dict[str, Callable[[Any], bool]] | None = None) -> _AfterImport | None:
    """Patch the modules in PATCHES as they load in this process (not those loaded already) and keep the
    distribution map; None where RUNNER_IMPORT_PATCHES=0 or it is installed already."""
    if os.environ.get(ENV_OFF, "").strip() == "0" or any(isinstance(f, _AfterImport) for f in sys.meta_path):
        return None
    import importlib.metadata

    finder = _AfterImport({name: patch for name, patch in (patches or PATCHES).items() if name not in sys.modules})
    if kept_distribution_map(importlib.metadata):
        finder.applied.append("importlib.metadata")
    sys.meta_path.insert(0, finder)
    return finder
