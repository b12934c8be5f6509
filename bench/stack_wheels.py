"""Carry the lock's GPU stack (runner/stack/gpu.lock) to the lent GPU machine, which cannot download.

The machine already holds torch 2.11.0 (CUDA 13.0) and many other packages; everything else the stages
import is carried as wheels at the lock's versions, in folders small enough for one device call each
(wheels larger than a folder travel in parts and are joined on the machine). What the benchmarks import
is then what the Modal images install.

Here (needs the package index):
    python bench/stack_wheels.py build --have bench/gpu-machine-packages.txt --out .stack --cap 58
On the GPU machine, one call per folder (the machine keeps /tmp while it stays warm); the last with --finish:
    python3 bench/stack_wheels.py install .stack12         # staged in /tmp/stack-wheels; parts are joined
    python3 bench/stack_wheels.py install .stack1 --finish # then one pip call into /tmp/site, and bytecode
    PYTHONPATH=/tmp/site:$PWD python3 bench/stack_wheels.py verify --out $OUT/stack.json

`--have` is `pip freeze --all` as read on that machine. Packages the stages never import on one GPU
(SKIP: server-side UIs, cloud file systems, kernels for other architectures, the CUDA compiler the
machine already has) stay behind; `verify` lists every package whose version there differs from the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as metadata
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.stack import LOCK, canonical, read_lock  # noqa: E402
from runner.stack.lock import TARGET, pip  # noqa: E402

# Never imported by a single-GPU job of this project; several are also very large.
SKIP = {
    # vLLM kernels for other models or paths: prebuilt FlashInfer binaries, MLA (DeepSeek), CuTe DSL,
    # TileLang. Llama generation on Hopper runs vLLM's own FlashAttention-3 build.
    "flashinfer-cubin": "prebuilt FlashInfer kernels (427 MB); Llama on Hopper uses vLLM's FlashAttention",
    "tokenspeed-triton": "MLA kernels (DeepSeek)", "tokenspeed-mla": "MLA kernels (DeepSeek)",
    "nvidia-cutlass-dsl": "CuTe DSL kernels", "nvidia-cutlass-dsl-libs-base": "CuTe DSL kernels",
    "nvidia-cutlass-dsl-libs-cu13": "CuTe DSL kernels", "tilelang": "TileLang kernels", "z3-solver": "TileLang",
    # the CUDA compiler as wheels: the machine has nvcc 13.0 installed
    "nvidia-cuda-nvcc": "machine has nvcc 13.0", "nvidia-nvvm": "machine has nvcc 13.0",
    "nvidia-cuda-tileiras": "machine has nvcc 13.0", "nvidia-cuda-crt": "machine has nvcc 13.0",
    "nvidia-cuda-cccl": "machine has nvcc 13.0",
    # axolotl's optional front ends and storage back ends
    "gradio": "axolotl's chat UI", "gradio-client": "axolotl's chat UI", "hf-gradio": "axolotl's chat UI",
    "safehttpx": "gradio", "groovy": "gradio", "ffmpy": "gradio", "pydub": "gradio", "semantic-version": "gradio",
    "lm-eval": "axolotl's lm-eval integration", "sqlitedict": "lm-eval", "rouge-score": "lm-eval",
    "word2number": "lm-eval", "pytablewriter": "lm-eval", "dataproperty": "lm-eval", "tabledata": "lm-eval",
    "typepy": "lm-eval", "mbstrdecoder": "lm-eval", "tcolorpy": "lm-eval", "pathvalidate": "lm-eval",
    "trackio": "axolotl's trackio logger", "plotly": "trackio",
    "oci": "OCI storage", "ocifs": "OCI storage", "s3fs": "S3 storage", "aiobotocore": "S3 storage",
    "botocore": "S3 storage", "gcsfs": "GCS storage", "adlfs": "Azure storage", "azure-core": "Azure storage",
    "azure-datalake-store": "Azure storage", "azure-identity": "Azure storage", "azure-storage-blob": "Azure storage",
    "msal": "Azure storage", "msal-extensions": "Azure storage",
    # FlashInfer needs the CuTe DSL above (~230 MB in all). vLLM 0.23 imports it only to ask whether to
    # sample top-p/top-k with it; modal_local.sh sets VLLM_USE_FLASHINFER_SAMPLER=0, and greedy eval on
    # Hopper runs vLLM's own FlashAttention. On Modal the image has it, as locked.
    "flashinfer-python": "top-p/top-k sampler only (VLLM_USE_FLASHINFER_SAMPLER=0 here)",
}
PART = ".part-"


def have_versions(path: Path) -> dict[str, str]:
    versions = {}
    for line in Path(path).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            versions[canonical(name)] = version
    return versions


def same_release(installed: str | None, locked: str) -> bool:
    """2.11.0+cu130 on the machine is the lock's 2.11.0 (PyPI's 2.11.0 wheels are the CUDA 13.0 build)."""
    return installed is not None and installed.split("+")[0] == locked


def build(have: Path, out: str, cap_mib: float) -> None:
    lock = read_lock(LOCK)
    machine = have_versions(have)
    needed = [pin for key, pin in lock.pins.items()
              if key not in SKIP and not same_release(machine.get(key), pin.version)]
    work = Path(tempfile.mkdtemp(prefix="stack-wheels-"))
    wheels = work / "wheels"
    binary = [pin for pin in needed if not pin.sdist]
    reqs = work / "binary.txt"
    reqs.write_text("".join(f"{p.name}=={p.version} " + " ".join(f"--hash={h}" for h in p.hashes) + "\n"
                            for p in binary))
    skipped = sum(key in SKIP for key in lock.pins)
    print(f"{len(needed)} of {len(lock.pins)} locked packages to carry: {skipped} are never imported here, "
          f"{len(lock.pins) - len(needed) - skipped} the machine has at the lock's version", flush=True)
    pip("download", "--no-deps", "--only-binary=:all:", *TARGET, "--require-hashes", "-d", str(wheels), "-r", str(reqs))
    for pin in (p for p in needed if p.sdist):
        pip("wheel", "--no-deps", "-w", str(wheels), f"{pin.name}=={pin.version}", env={"DS_BUILD_OPS": "0"})
    pack(sorted(wheels.glob("*.whl")), out, int(cap_mib * 2**20))
    shutil.rmtree(work)


def wheel_requires(wheel: Path) -> set[str]:
    """The packages a wheel needs on CPython 3.12 / Linux x86-64 (its METADATA's Requires-Dist, extras left
    out, markers evaluated for that target)."""
    import zipfile

    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode(errors="replace")
    needs = set()
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.partition(":")[2].strip())
            if req.marker is None or req.marker.evaluate(env):
                needs.add(canonical(req.name))
    return needs


def _joined(folders: list[Path], work: Path) -> list[Path]:
    """Every wheel of the folders, parts joined, in `work`."""
    install(folders, work / "unused", work, finish=False)
    return sorted(work.glob("*.whl"))


def repack(prefix: str, out: str, without: set[str], cap_mib: float) -> None:
    """The carried folders again, without the named top-level packages and what only they need: a GPU
    session that measures training and the transformers eval carries no vLLM (5 of 12 calls)."""
    work = Path(tempfile.mkdtemp(prefix="stack-repack-"))
    wheels = {canonical(f.name.split("-")[0]): f for f in _joined(sorted(Path(prefix).parent.glob(
        Path(prefix).name + "[0-9]*")), work)}
    requires = {name: wheel_requires(f) for name, f in wheels.items()}

    def needs(name: str) -> set[str]:
        """A carried wheel's own list; for a package the machine already has, this interpreter's copy of
        it (another version, maybe: close enough to keep what it imports)."""
        if name in requires:
            return requires[name]
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return set()
        from packaging.requirements import Requirement

        out = set()
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                out.add(canonical(req.name))
        return out

    def closure(roots: set[str]) -> set[str]:
        seen, todo = set(), list(roots)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += needs(name)
        return seen

    gpu_in = [canonical(line.split("==")[0]) for line in (LOCK.parent / "gpu.in").read_text().splitlines()
              if "==" in line and not line.startswith("#")]
    unknown_names = without - set(gpu_in)
    if unknown_names:
        raise SystemExit(f"error: {', '.join(sorted(unknown_names))} is not a top-level package of gpu.in")
    keep = closure(set(gpu_in) - without)
    dropped = sorted(set(wheels) - keep)
    print(f"leaving out {len(dropped)} of {len(wheels)} wheels ({sum(wheels[n].stat().st_size for n in dropped) / 2**20:.0f} "
          f"MiB): {', '.join(dropped)}", flush=True)
    pack([wheels[n] for n in sorted(keep & set(wheels))], out, int(cap_mib * 2**20))
    shutil.rmtree(work)


def pack(files: list[Path], prefix: str, cap: int) -> None:
    """First-fit-decreasing into folders PREFIX1..N of at most `cap` bytes; big files go in parts."""
    items: list[tuple[int, Path, int | None, int]] = []   # (size, file, part index, parts)
    for f in files:
        size = f.stat().st_size
        parts = -(-size // cap)
        if parts == 1:
            items.append((size, f, None, 1))
        else:
            items += [(min(cap, size - i * cap), f, i, parts) for i in range(parts)]
    for old in Path(prefix).parent.glob(Path(prefix).name + "[0-9]*"):
        shutil.rmtree(old)
    bins: list[list] = []
    for item in sorted(items, key=lambda it: -it[0]):
        target = next((b for b in bins if sum(i[0] for i in b) + item[0] <= cap), None)
        if target is None:
            bins.append(target := [])
        target.append(item)
    for n, content in enumerate(bins, start=1):
        folder = Path(f"{prefix}{n}")
        folder.mkdir(parents=True)
        for size, f, index, parts in content:
            if index is None:
                shutil.copy(f, folder / f.name)
            else:
                with f.open("rb") as src:
                    src.seek(index * cap)
                    (folder / f"{f.name}{PART}{index + 1}-of-{parts}").write_bytes(src.read(size))
        print(f"{folder}: {sum(i[0] for i in content) / 2**20:.1f} MiB, {len(content)} files", flush=True)


def install(folders: list[Path], target: Path, staging: Path, finish: bool) -> None:
    """Stage each folder's wheels (joining parts once all have arrived); with `finish`, install every staged
    wheel in ONE pip call. Separate `pip install --target --upgrade` calls would replace each other's
    namespace folders (`opentelemetry/`, `google/`, ...): the last one wins and the others lose modules."""
    staging.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for f in sorted(folder.iterdir()):
            if f.suffix == ".whl" or PART in f.name:
                shutil.copy(f, staging / f.name)
    for first in staging.glob(f"*{PART}1-of-*"):
        name, _, counts = first.name.partition(PART)
        total = int(counts.split("-of-")[1])
        parts = [staging / f"{name}{PART}{i}-of-{total}" for i in range(1, total + 1)]
        if all(p.exists() for p in parts):
            with (staging / name).open("wb") as out:
                for p in parts:
                    out.write(p.read_bytes())
                    p.unlink()
    waiting = sorted({f.name.partition(PART)[0] for f in staging.glob(f"*{PART}*")})
    wheels = sorted(staging.glob("*.whl"))
    print(f"staged {len(wheels)} wheels in {staging}" + (f"; waiting for parts of {', '.join(waiting)}" if waiting else ""))
    if finish:
        if waiting:
            raise SystemExit(f"error: parts missing for {', '.join(waiting)}: install their folders first")
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(target), *map(str, wheels)], check=True)
        # bytecode as pip (and so every Modal image) writes it at install, on every core at once (8 s on the
        # H200 machine; pip's own would be one core): without it every stage process compiles what it imports
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(target)], check=False,
                       stdout=subprocess.DEVNULL)
        print(f"installed {len(wheels)} wheels into {target}", flush=True)


# Modules whose versions the report names (import name → distribution).
KEY_MODULES = {"torch": "torch", "axolotl": "axolotl", "transformers": "transformers", "peft": "peft",
               "accelerate": "accelerate", "vllm": "vllm", "liger_kernel": "liger-kernel", "deepspeed": "deepspeed",
               "bitsandbytes": "bitsandbytes", "datasets": "datasets", "trl": "trl", "triton": "triton",
               "numpy": "numpy", "pyarrow": "pyarrow", "modal": "modal", "hydra": "hydra-core", "omegaconf": "omegaconf"}


def verify(out: Path | None) -> int:
    """The lock against what this interpreter imports: every package's installed version, key modules' own."""
    lock = read_lock(LOCK)
    rows, differ = {}, []
    for key, pin in sorted(lock.pins.items()):
        try:
            installed = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            installed = None
        state = "same" if same_release(installed, pin.version) else ("missing" if installed is None else "differs")
        rows[pin.name] = {"lock": pin.version, "installed": installed, "state": state,
                          **({"skipped": SKIP[key]} if key in SKIP else {})}
        if state != "same" and key not in SKIP:
            differ.append(f"{pin.name}: lock {pin.version}, here {installed}")
    imported = {}
    for module, dist in KEY_MODULES.items():
        try:
            mod = importlib.import_module(module)
            imported[module] = {"version": getattr(mod, "__version__", None) or metadata.version(dist),
                                "path": str(Path(mod.__file__).parent), "lock": lock.version(dist)}
        except Exception as e:  # noqa: BLE001 - report what failed to import, go on
            imported[module] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300],
                                "lock": lock.version(dist)}
    report = {"lock": str(LOCK.relative_to(ROOT)), "lock_sha256": hashlib.sha256(LOCK.read_bytes()).hexdigest(),
              "python": sys.version.split()[0], "imported": imported, "differs": differ, "packages": rows}
    for module, info in imported.items():
        print(f"{module:13} {info.get('version') or info.get('error')}  (lock {info['lock']})")
    print(f"{len(lock.pins)} locked: {sum(r['state'] == 'same' for r in rows.values())} at the lock's version, "
          f"{len(differ)} differ (not skipped), {sum(canonical(n) in SKIP for n in rows)} skipped as never imported")
    for line in differ:
        print("  differs:", line)
    if out:
        out.write_text(json.dumps(report, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--have", type=Path, required=True)
    b.add_argument("--out", default=".stack")
    b.add_argument("--cap", type=float, default=60, help="MiB per folder")
    i = sub.add_parser("install")
    i.add_argument("folders", nargs="+", type=Path)
    i.add_argument("--target", type=Path, default=Path("/tmp/site"))
    i.add_argument("--staging", type=Path, default=Path("/tmp/stack-wheels"))
    i.add_argument("--finish", action="store_true", help="install everything staged, in one pip call")
    r = sub.add_parser("repack", help="the built folders again, without top-level packages (e.g. vllm)")
    r.add_argument("--from", dest="source", default=".stack")
    r.add_argument("--out", default=".lean")
    r.add_argument("--without", required=True, help="comma-separated top-level packages of gpu.in")
    r.add_argument("--cap", type=float, default=61.5, help="MiB per folder")
    v = sub.add_parser("verify")
    v.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        build(args.have, args.out, args.cap)
    elif args.command == "repack":
        repack(args.source, args.out, {canonical(n) for n in args.without.split(",") if n}, args.cap)
    elif args.command == "install":
        install(args.folders, args.target, args.staging, args.finish)
    else:
        return verify(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
