"""One file of compiled bytecode for a stage process's imports, read once instead of ~5 000 files.

A train stage imports ~5 000 modules before its first optimizer step. For each one Python's import system
stats the directories on its search path and the source, then opens, reads and validates the cached bytecode
— or, where there is none (images with PYTHONDONTWRITEBYTECODE=1 and packages installed without it, like the
lent GPU machine's torch), compiles the source, in every process. On that H100 the train process reached its
first step in 11–16 s with this file against 20 s without (torch compiled: 11–13 s against 15–16 s;
bench/RESULTS.md §13, eighth session).

The first stage process of an environment records the compiled code of every module it loads from source
into one file (written when the process ends, merged with what another process wrote meanwhile); later
processes with the same interpreter and search path read that file once and import those modules from
memory. Each module's source is still stat'ed, exactly as Python checks its own bytecode cache (modification
time and size): an edited, replaced or removed source falls back to the normal import and is recorded again,
so nothing stale ever runs. Installing or removing a package (a changed search-path folder) starts the file
afresh. Only modules that Python's own path finder would load from a `.py` file are bundled (no extensions,
namespace packages, frozen or built-in modules); a finder that must answer first (runner.stages.unused_packages'
blocked packages) is placed before this one.

The same file keeps values derived from installed files, each with the state of the files it was derived
from (`Bundle.remember`; runner.stages.import_patches keeps transformers' import structure and
`importlib.metadata.packages_distributions()` there).

A folder keeps the files of the 4 environments used last. RUNNER_IMPORT_BUNDLE=0 turns it off;
RUNNER_IMPORT_BUNDLE=<folder> says where the files go (stage_env sets `<cache_dir>/imports`).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
from typing import Any, Callable

ENV = "RUNNER_IMPORT_BUNDLE"
MAGIC = b"RUNIMP1\n"   # + 8-byte index length, the index (marshal), then the code objects (marshal)
KEEP = 4   # bundle files kept per folder (~100 MB each): those of the environments used last


def _search_path() -> list[str]:
    """sys.path with the working directory (a stage runs in its run folder: new for every run) as a marker."""
    cwd = os.getcwd()
    return ["<cwd>" if entry in ("", cwd) else entry for entry in sys.path]


def bundle_path(folder: str) -> str:
    """The bundle for this interpreter and this search path."""
    key = repr((sys.version, sys.executable, _search_path()))
    return os.path.join(folder, f"imports-{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin")


def _entry_times() -> dict[str, int]:
    """Modification times of the search path's folders: installing or removing a package changes them."""
    times = {}
    for entry in _search_path():
        if entry != "<cwd>":
            try:
                times[entry] = os.stat(entry).st_mtime_ns
            except OSError:
                times[entry] = -1
    return times


def _cwd_names() -> frozenset[str]:
    """Top-level modules the working directory holds (they shadow installed ones, as Python would find them)."""
    if "<cwd>" not in _search_path():
        return frozenset()
    try:
        names = os.listdir(os.getcwd())
    except OSError:
        return frozenset()
    return frozenset(n[:-3] if n.endswith(".py") else n for n in names)


def _source_state(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _load(path: str, times: dict[str, int]) -> tuple[dict[str, tuple], memoryview, dict[str, tuple]]:
    """A bundle file's index, code and derived values; empty where there is none, it is unreadable, or a
    search-path folder changed since it was written (a package installed or removed)."""
    empty: tuple[dict[str, tuple], memoryview, dict[str, tuple]] = ({}, memoryview(b""), {})
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return empty
    head = len(MAGIC) + 8
    if not data.startswith(MAGIC) or len(data) < head:
        return empty
    size = int.from_bytes(data[len(MAGIC):head], "little")
    try:
        header = marshal.loads(data[head:head + size])
    except (EOFError, ValueError, TypeError):
        return empty
    if not isinstance(header, dict) or header.get("times") != times or not isinstance(header.get("modules"), dict):
        return empty
    derived = header.get("derived")
    return header["modules"], memoryview(data)[head + size:], derived if isinstance(derived, dict) else {}


class _BundledLoader(importlib.machinery.SourceFileLoader):
    """Python's own source loader (resources, source, file names as usual) whose code comes from the bundle."""

    def __init__(self, fullname: str, path: str, code: memoryview):
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str):
        return marshal.loads(self._code)


class _RecordingLoader(importlib.machinery.SourceFileLoader):
    """Python's own source loader that hands each module's code and source state to the bundle: the bytecode
    file's bytes as read (or the code marshalled, where Python compiled the source)."""

    def __init__(self, fullname: str, path: str, bundle: "Bundle"):
        super().__init__(fullname, path)
        self._bundle = bundle
        self._state: tuple[int, int] | None = None
        self._bytecode: bytes | None = None

    def path_stats(self, path: str) -> dict:
        st = os.stat(path)   # the stat Python makes anyway, kept to key the recorded code
        self._state = st.st_mtime_ns, st.st_size
        return {"mtime": st.st_mtime, "size": st.st_size}

    def get_data(self, path: str) -> bytes:
        data = super().get_data(path)
        if path.endswith(".pyc"):
            self._bytecode = data
        return data

    def get_code(self, fullname: str):
        code = super().get_code(fullname)
        if code is not None and self._state is not None:
            # a bytecode file Python accepted holds 16 bytes of header, then exactly this code, marshalled
            data = self._bytecode[16:] if self._bytecode is not None else marshal.dumps(code)
            self._bundle.record(fullname, self.path, self.is_package(fullname), self._state, data)
        self._bytecode = None
        return code


class Bundle:
    """A meta path finder serving recorded modules from memory and recording the others."""

    def __init__(self, path: str):
        self.path = path
        self.times = _entry_times()
        self.shadowed = _cwd_names()
        self.index: dict[str, tuple] = {}   # name -> (origin, is_package, mtime_ns, size, offset, length)
        self.blob = memoryview(b"")
        self.served = 0
        self.recorded: dict[str, tuple] = {}   # name -> (origin, is_package, mtime_ns, size, code bytes)
        self.stale: set[str] = set()
        self.derived: dict[str, tuple] = {}   # key -> (state of the files it was derived from, marshalled value)
        self.derived_found: set[str] = set()   # derived by this process: to be written
        self.index, self.blob, self.derived = _load(path, self.times)

    # the meta path finder protocol
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname.partition(".")[0] in self.shadowed:
            return None   # the working directory's own module: Python finds it
        entry = self.index.get(fullname)
        if entry is not None:
            origin, is_package, mtime_ns, size, offset, length = entry
            if _source_state(origin) == (mtime_ns, size):
                self.served += 1
                loader = _BundledLoader(fullname, origin, self.blob[offset:offset + length])
                return self._spec(fullname, origin, loader, is_package)
            self.stale.add(fullname)   # edited or gone: Python finds it as usual, and it is recorded again
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec   # extensions, namespace packages, other loaders: as Python found them
        return self._spec(fullname, spec.origin, _RecordingLoader(fullname, spec.origin, self),
                          spec.submodule_search_locations is not None)

    @staticmethod
    def _spec(fullname: str, origin: str, loader, is_package: bool):
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=loader,
            submodule_search_locations=[os.path.dirname(origin)] if is_package else None)

    def invalidate_caches(self) -> None:
        pass

    def record(self, fullname: str, origin: str, is_package: bool, state: tuple[int, int], code: bytes) -> None:
        self.recorded[fullname] = (origin, is_package, *state, code)

    def remember(self, key: str, state: Any, derive: Callable[[], Any]) -> Any:
        """The value `derive()` gives, kept under `key` with `state` (what it was derived from, e.g. files'
        times and sizes): read back while the state is the same, derived again (and kept) when it is not."""
        kept = self.derived.get(key)
        if kept is not None and kept[0] == state:
            try:
                return marshal.loads(kept[1])
            except (EOFError, ValueError, TypeError):
                pass
        value = derive()
        try:
            self.derived[key] = (state, marshal.dumps(value))
        except ValueError:   # not marshallable: not kept
            return value
        self.derived_found.add(key)
        return value

    def write(self) -> bool:
        """Write the served and recorded modules to the bundle file (atomically); False if nothing new."""
        if not self.recorded and not self.stale and not self.derived_found:
            return False
        # what another process (the eval stage beside the trainer) wrote since this one read the file, and
        # what this one read, less what it found stale or recorded anew
        disk_index, disk_blob, disk_derived = _load(self.path, self.times)
        modules: dict[str, tuple] = {}
        chunks: list[bytes | memoryview] = []
        offset = 0
        for index, blob in ((disk_index, disk_blob), (self.index, self.blob)):
            for name, (origin, is_package, mtime_ns, size, old_offset, length) in index.items():
                if name in modules or name in self.recorded or name in self.stale:
                    continue
                chunks.append(blob[old_offset:old_offset + length])
                modules[name] = (origin, is_package, mtime_ns, size, offset, length)
                offset += length
        for name, (origin, is_package, mtime_ns, size, code) in self.recorded.items():
            chunks.append(code)
            modules[name] = (origin, is_package, mtime_ns, size, offset, len(code))
            offset += len(code)
        derived = {**disk_derived, **{key: self.derived[key] for key in self.derived_found}}
        header = marshal.dumps({"times": self.times, "modules": modules, "derived": derived})
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(MAGIC + len(header).to_bytes(8, "little") + header)
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, self.path)   # a reader sees the old file or the new one, never a part
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        _prune(os.path.dirname(self.path))
        return True


def _prune(folder: str, keep: int = KEEP) -> list[str]:
    """Remove all but the `keep` bundle files used last (a file's time is its last use: see install)."""
    try:
        files = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("imports-") and n.endswith(".bin")]
        files.sort(key=os.path.getmtime, reverse=True)
    except OSError:
        return []
    removed = []
    for path in files[keep:]:
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def installed() -> Bundle | None:
    """This process's bundle, if one is installed."""
    return next((finder for finder in sys.meta_path if isinstance(finder, Bundle)), None)


def install(folder: str | None = None) -> Bundle | None:
    """Serve this process's imports from its environment's bundle in `folder` (or RUNNER_IMPORT_BUNDLE),
    recording what it lacks, written at exit; None where RUNNER_IMPORT_BUNDLE=0 or no folder is given."""
    setting = os.environ.get(ENV, "").strip()
    if setting == "0":
        return None
    folder = setting or folder
    if not folder or installed() is not None:
        return None
    bundle = Bundle(bundle_path(folder))
    if bundle.index:
        try:
            os.utime(bundle.path)   # used now: kept by _prune over the environments not used for longest
        except OSError:
            pass
    sys.meta_path.insert(0, bundle)
    atexit.register(bundle.write)
    return bundle
