"""The GPU software stack: one lock file that every Modal image installs and the GPU benchmark carries.

    runner/stack/gpu.in     the top-level pins (torch, axolotl, vLLM, ...), edited by hand
    runner/stack/gpu.lock   every package with its version and sha256, written by `python -m runner.stack.lock`

The Modal images install gpu.lock with `pip install --no-deps --require-hashes` (nothing else, nothing
resolved at build time), and `python -m runner.stack.wheels` turns the same file into wheel folders for
the lent GPU machine, so what the benchmarks measure is what Modal runs. Plain text, read without imports
of pip or packaging: the dry run shows the stack from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STACK_DIR = Path(__file__).resolve().parent
REQUIREMENTS = STACK_DIR / "gpu.in"
LOCK = STACK_DIR / "gpu.lock"
# `pip install` options of every image layer that installs the lock: the lock is complete (its check
# resolves it again), so pip must not resolve anything itself, and every file must match its hash.
PIP_INSTALL_OPTIONS = "--no-deps --require-hashes"
# The packages the dry run names, in this order.
HEADLINE = ("torch", "axolotl", "vllm", "transformers", "peft", "deepspeed", "liger-kernel", "bitsandbytes")
DISPLAY = {"vllm": "vLLM"}


def canonical(name: str) -> str:
    """PEP 503 name: `Liger_Kernel` and `liger-kernel` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str                 # as the index spells it
    version: str
    hashes: tuple[str, ...]   # "sha256:..."
    sdist: bool = False       # no wheel on the index: built from source at install time


@dataclass(frozen=True)
class Lock:
    path: Path
    python: str               # "3.12"
    platform: str             # "manylinux_2_36_x86_64"
    pins: dict[str, Pin]      # canonical name → pin

    def version(self, name: str) -> str | None:
        pin = self.pins.get(canonical(name))
        return pin.version if pin else None

    @property
    def cuda(self) -> str | None:
        """CUDA release of the torch wheels, from the cuda-toolkit they pin (13.0.2 → 13.0)."""
        toolkit = self.version("cuda-toolkit")
        return ".".join(toolkit.split(".")[:2]) if toolkit else None

    def summary(self) -> str:
        """One line for the dry run: Python, torch (CUDA), axolotl, vLLM, ... and where the lock is."""
        parts = [f"Python {self.python}"]
        for name in HEADLINE:
            version = self.version(name)
            if version is None:
                continue
            label = f"{DISPLAY.get(name, name)} {version}"
            if name == "torch" and self.cuda:
                label += f" (CUDA {self.cuda})"
            parts.append(label)
        return f"{', '.join(parts)}; {len(self.pins)} packages pinned in {_shown(self.path)}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(STACK_DIR.parents[1]))
    except ValueError:
        return str(path)


HEADER = re.compile(r"^#\s*(python|platform|sdists):\s*(.*)$")
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)")


def read_lock(path: Path = LOCK) -> Lock:
    """Parse gpu.lock: `name==version \\` lines, each followed by `--hash=sha256:...` lines."""
    meta: dict[str, str] = {}
    pins: dict[str, Pin] = {}
    current: list = []

    def flush() -> None:
        if current:
            name, version, hashes = current
            pins[canonical(name)] = Pin(name, version, tuple(hashes), canonical(name) in sdists)
            current.clear()

    lines = Path(path).read_text().splitlines()
    for line in lines:
        if match := HEADER.match(line.strip()):
            meta[match.group(1)] = match.group(2).strip()
    sdists = {canonical(n) for n in meta.get("sdists", "").replace(",", " ").split()}
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if match := ENTRY.match(text):
            flush()
            current.extend([match.group(1), match.group(2), []])
        for digest in re.findall(r"--hash=(\S+)", text):
            current[2].append(digest)
    flush()
    return Lock(Path(path), meta.get("python", "?"), meta.get("platform", "?"), pins)


_cached: Lock | None = None


def stack() -> Lock:
    """The project's lock, read once per process."""
    global _cached
    if _cached is None:
        _cached = read_lock()
    return _cached


VLLM_SERVE_FLAGS = STACK_DIR / "vllm-serve-flags.txt"


@dataclass(frozen=True)
class VllmServeFlags:
    """The options of `vllm serve` in one vLLM release, as its own `--help=all` printed them."""

    version: str
    options: frozenset[str]
    lora_ranks: tuple[int, ...]   # the values --max-lora-rank accepts


def vllm_serve_flags(path: Path = VLLM_SERVE_FLAGS) -> VllmServeFlags:
    meta, options = {}, set()
    for line in Path(path).read_text().splitlines():
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line.strip():
            options.add(line.strip())
    ranks = tuple(int(r) for r in meta.get("max-lora-rank", "").split(",") if r)
    return VllmServeFlags(meta.get("vllm", "?"), frozenset(options), ranks)
