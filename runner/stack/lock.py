"""Write or check runner/stack/gpu.lock with pip's own resolver, for CPython 3.12 on Linux x86-64.

    python -m runner.stack.lock            # resolve gpu.in, write gpu.lock (a few minutes)
    python -m runner.stack.lock --check    # resolve again with the lock as constraints: same set, same files?

pip resolves for the target with `install --dry-run --report --python-version 3.12 --platform ...`, which
only reads metadata (no multi-GB downloads). That mode takes wheels only, so the few packages published
as source alone (deepspeed, langdetect, ...) are first built into local wheels of the same version; the
lock records their source archive and its hash, which is what the image installs. pip evaluates
environment markers (`sys_platform`, `platform_machine`) on the machine that runs it, so this runs on
Linux x86-64 only. Exit codes: 0 fine, 1 the lock disagrees, 2 bad use, 3 the registry is unreachable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runner.stack import LOCK, REQUIREMENTS, Lock, canonical, read_lock

DEFAULT_INDEX = "https://pypi.org/simple"
PYTHON = "3.12"
GLIBC = 36   # Debian bookworm (Modal's debian_slim for Python 3.12): manylinux_2_36 and older
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
TARGET = ["--python-version", PYTHON, "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
          *[arg for plat in PLATFORMS for arg in ("--platform", plat)]]
MAX_SOURCE_BUILDS = 30
NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")


class Unreachable(Exception):
    """The package index cannot be reached."""


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    hash: str          # sha256:... of the file pip would install
    sdist: bool


def pip_env() -> dict[str, str]:
    """pip without this machine's own configuration (mirrors, caps, find-links): the index alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def pip(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                            env={**pip_env(), **(env or {})})
    if check and result.returncode != 0:
        raise RuntimeError(f"pip {args[0]} failed:\n{_tail(result)}")
    return result


def _tail(result: subprocess.CompletedProcess, lines: int = 15) -> str:
    text = [line for line in (result.stderr + result.stdout).splitlines()
            if line.strip() and not line.startswith("ERROR: Ignored the following versions")]
    return "\n".join(text[-lines:])


def require_index(index: str, timeout: float = 10) -> None:
    try:
        urllib.request.urlopen(urllib.request.Request(index.rstrip("/") + "/pip/", method="HEAD"), timeout=timeout)
    except (urllib.error.URLError, OSError) as e:
        raise Unreachable(f"package index {index} unreachable ({getattr(e, 'reason', e)})") from None


def require_linux_x86_64() -> None:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise SystemExit("error: run this on Linux x86-64: pip evaluates environment markers on the machine that "
                         f"runs it, and the lock is for Linux x86-64 (this is {sys.platform} {platform.machine()})")


def built_wheels_dir() -> Path:
    """Wheels built from source archives, one folder per archive hash: the same archive builds the same
    wheel, so a check after the first one builds nothing (DeepSpeed's build alone takes minutes)."""
    return Path(os.environ.get("RUNNER_CACHE") or Path.home() / ".cache" / "runner") / "lock-wheels"


def build_from_source(spec: str, index: str, sdists: Path, wheels: Path) -> tuple[str, str, str]:
    """Download `spec`'s source archive, build it into a wheel (or take the one built from the same archive
    before); (name, version, sha256 of the archive)."""
    import shutil

    before = set(sdists.iterdir())
    pip("download", "--no-deps", "--no-binary=:all:", "--index-url", index, "-d", str(sdists), spec)
    (archive,) = set(sdists.iterdir()) - before or [_existing(sdists, spec)]
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cached = built_wheels_dir() / digest
    if not list(cached.glob("*.whl")):
        staging = cached.with_name(f"{digest}.{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        # DS_BUILD_OPS=0: DeepSpeed's kernels compile at first use, as they do in the image
        pip("wheel", "--no-deps", "--index-url", index, "-w", str(staging), str(archive), env={"DS_BUILD_OPS": "0"})
        try:
            staging.rename(cached)
        except OSError:   # another check built it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    for wheel in cached.glob("*.whl"):
        shutil.copy(wheel, wheels / wheel.name)
    name, version = _sdist_name_version(archive.name)
    return name, version, "sha256:" + digest


def _existing(sdists: Path, spec: str) -> Path:
    stem = canonical(re.split(r"[=<>!~ ]", spec)[0]).replace("-", "_")
    return next(p for p in sdists.iterdir() if canonical(p.name).replace("-", "_").startswith(stem))


def _sdist_name_version(filename: str) -> tuple[str, str]:
    stem = re.sub(r"\.(tar\.gz|zip|tar\.bz2)$", "", filename)
    name, _, version = stem.rpartition("-")
    return name, version


def resolve(requirements: Path, index: str, constraints: Path | None = None,
            sources: dict[str, str] | None = None, log=print) -> list[Resolved]:
    """pip's resolution of `requirements` for the target; `sources` (name → version) are built first."""
    require_index(index)
    work = Path(tempfile.mkdtemp(prefix="runner-lock-"))
    sdists, wheels, report = work / "sdists", work / "wheels", work / "report.json"
    sdists.mkdir()
    wheels.mkdir()
    built: dict[str, str] = {}   # canonical name → archive hash
    for name, version in (sources or {}).items():
        log(f"building {name}=={version} from source (no wheel on the index)")
        got_name, _, digest = build_from_source(f"{name}=={version}", index, sdists, wheels)
        built[canonical(got_name)] = digest
    for _ in range(MAX_SOURCE_BUILDS):
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--only-binary=:all:", *TARGET, "--target", str(work / "target"), "--index-url", index,
                "--find-links", str(wheels), "-r", str(requirements)]
        if constraints:
            args += ["-c", str(constraints)]
        result = pip(*args, check=False)
        if result.returncode == 0:
            break
        missing = NO_MATCH.search(result.stderr + result.stdout)
        if not missing:
            raise RuntimeError(f"pip cannot resolve {requirements.name}:\n{_tail(result)}")
        log(f"building {missing.group(1)} from source (no wheel on the index)")
        name, _, digest = build_from_source(missing.group(1), index, sdists, wheels)
        built[canonical(name)] = digest
    else:
        raise RuntimeError(f"more than {MAX_SOURCE_BUILDS} packages without wheels: giving up")
    items = json.loads(report.read_text())["install"]
    resolved = []
    for item in items:
        meta, info = item["metadata"], item["download_info"]
        key = canonical(meta["name"])
        if info["url"].startswith("file:"):
            resolved.append(Resolved(meta["name"], meta["version"], built[key], sdist=True))
        else:
            digest = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            resolved.append(Resolved(meta["name"], meta["version"], f"sha256:{digest}", sdist=False))
    return sorted(resolved, key=lambda r: canonical(r.name))


def lock_text(resolved: list[Resolved]) -> str:
    sdists = [r.name for r in resolved if r.sdist]
    lines = [
        "# The GPU software stack, complete: every Modal image installs exactly this file",
        "# (pip install --no-deps --require-hashes -r gpu.lock) and the GPU benchmark carries the same",
        "# versions to the lent machine (python -m runner.stack.wheels). Do not edit: change gpu.in, then",
        "#     python -m runner.stack.lock            (rewrite)",
        "#     python -m runner.stack.lock --check    (CI: does it still resolve to exactly this?)",
        f"# python: {PYTHON}",
        f"# platform: {PLATFORMS[0]}",
        f"# sdists: {', '.join(sdists)}",
        "",
    ]
    for r in resolved:
        lines += [f"{r.name}=={r.version} \\", f"    --hash={r.hash}"]
    return "\n".join(lines) + "\n"


def compare(lock: Lock, resolved: list[Resolved]) -> list[str]:
    """What differs between the lock and a fresh resolution: one line per package."""
    problems = []
    fresh = {canonical(r.name): r for r in resolved}
    for key, pin in sorted(lock.pins.items()):
        got = fresh.get(key)
        if got is None:
            problems.append(f"{pin.name}=={pin.version}: in the lock but nothing needs it")
        elif got.version != pin.version:
            problems.append(f"{pin.name}: lock has {pin.version}, the resolver picks {got.version}")
        elif got.hash not in pin.hashes:
            problems.append(f"{pin.name}=={pin.version}: the index's file ({got.hash[:19]}…) is not the locked one")
    for key, got in sorted(fresh.items()):
        if key not in lock.pins:
            problems.append(f"{got.name}=={got.version}: needed but not in the lock")
    return problems


def constraints_file(lock: Lock) -> Path:
    path = Path(tempfile.mkstemp(prefix="gpu-lock-", suffix=".txt")[1])
    path.write_text("".join(f"{pin.name}=={pin.version}\n" for pin in lock.pins.values()))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.stack.lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="resolve again and compare with the lock")
    parser.add_argument("--index-url", default=DEFAULT_INDEX)
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    require_linux_x86_64()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.check:
            lock = read_lock(args.lock)
            sources = {pin.name: pin.version for pin in lock.pins.values() if pin.sdist}
            resolved = resolve(REQUIREMENTS, args.index_url, constraints_file(lock), sources, log)
            problems = compare(lock, resolved)
            for line in problems:
                print(f"lock: {line}")
            if problems:
                print(f"error: {args.lock.name} is out of date ({len(problems)} differences): "
                      "run `python -m runner.stack.lock`", file=sys.stderr)
                return 1
            print(f"{args.lock.name}: {len(lock.pins)} packages resolve for CPython {lock.python} on {lock.platform}, "
                  "exactly as locked")
            return 0
        resolved = resolve(REQUIREMENTS, args.index_url, log=log)
        args.lock.write_text(lock_text(resolved))
        print(f"wrote {args.lock} ({len(resolved)} packages)")
        return 0
    except Unreachable as e:
        print(f"skipped: {e}: the lock was not checked", file=sys.stderr)
        return 3
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
