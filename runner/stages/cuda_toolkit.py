"""A CUDA toolkit for the extensions DeepSpeed builds at run time, from the lock's own NVIDIA wheels.

DeepSpeed compiles some of its ops the first time a job uses them: `deepspeed=zero3_offload` keeps Adam's
state in CPU memory and steps it with DeepSpeedCPUAdam, a C++ extension that torch's cpp_extension builds
against the CUDA headers and links with cudart, cuBLAS and cuRAND, found through CUDA_HOME. The stage images
are Debian slim with no system toolkit, but the lock's wheels install one piece by piece under
`site-packages/nvidia/cu13` (`nvcc` from nvidia-cuda-nvcc, the headers from nvidia-cuda-runtime, -crt and
-cccl, the libraries from nvidia-cuda-runtime, -cublas and -curand) — without the unversioned `libX.so`
names a linker looks for, and spread over more than one folder where the packages come from several places.

Without a toolkit, DeepSpeed 0.18.9 cannot even be imported on a GPU machine: its import checks every op's
compatibility, and the fp_quantizer check asks for the toolkit's version (MissingCUDAException: "CUDA_HOME does
not exist"), so anything that imports it fails — accelerate's `unwrap_model` does whenever DeepSpeed is
installed, e.g. in every `save_pretrained` (measured on the lent H100 with its toolkit hidden, bench/RESULTS.md
§13). `stage_vars()` (every stage's environment, runner.stages.stage_env) therefore makes one folder that looks
like a toolkit (bin/, include/, lib64/ with the linker's names) out of every `nvidia/cu*` folder on sys.path
and points CUDA_HOME at it, on a machine where DeepSpeed is installed and no CUDA_HOME or nvcc is. The
wheels' nvcc may be a newer minor release than the CUDA torch was built with (13.2 beside 13.0 in the lock);
DeepSpeed refuses a minor mismatch for CUDA 13 unless DS_SKIP_CUDA_CHECK=1, which is set then: the CPU ops are
C++ only and link the runtime torch already loads.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = "cuda_runtime.h"


def wheel_roots(paths: list[str] | None = None) -> list[Path]:
    """The `nvidia/cuNN` folders of the NVIDIA wheels on these import paths (sys.path), for the newest CUDA
    among them only (one toolkit is never mixed from two releases), in import-path order."""
    roots = []
    for entry in paths if paths is not None else sys.path:
        nvidia = Path(entry or ".") / "nvidia"
        if nvidia.is_dir():
            roots += [p for p in sorted(nvidia.glob("cu[0-9]*")) if p.is_dir() and p.name[2:].isdigit()]
    newest = max((int(r.name[2:]) for r in roots), default=None)
    return [r for r in roots if int(r.name[2:]) == newest]


def assemble(roots: list[Path], home: Path) -> Path | None:
    """Link the roots' bin/, include/ and lib/ files into one toolkit folder `home` (the first root that has
    a name wins); each versioned library `libX.so.N` also gets the name `libX.so`. None without nvcc or the
    runtime header among them."""
    if not any((r / "bin" / "nvcc").is_file() for r in roots) or \
            not any((r / "include" / HEADER).is_file() for r in roots):
        return None
    home.mkdir(parents=True, exist_ok=True)
    for part, target in (("bin", "bin"), ("include", "include"), ("lib", "lib64")):
        out = home / target
        out.mkdir(exist_ok=True)
        for root in roots:
            for item in sorted((root / part).glob("*")) if (root / part).is_dir() else []:
                _link(item, out / item.name)
                plain = re.sub(r"(\.so)\.\d+(\.\d+)*$", r"\1", item.name)
                if part == "lib" and plain != item.name:
                    _link(item, out / plain)
    _link(Path("lib64"), home / "lib")
    return home


def _link(source: Path, name: Path) -> None:
    try:
        name.symlink_to(source)
    except FileExistsError:   # an earlier root's file of that name, or another process of the job
        pass


def nvcc_version(nvcc: Path) -> str | None:
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


_stage_vars: dict[str, str] | None = None


def stage_vars() -> dict[str, str]:
    """The variables every stage process gets (runner.stages.stage_env): CUDA_HOME, and DS_SKIP_CUDA_CHECK where
    needed, on a machine where DeepSpeed is installed and no toolkit is (the stage image). Worked out once."""
    global _stage_vars
    if _stage_vars is None:
        env = dict(os.environ)
        prepare(env) if importlib.util.find_spec("deepspeed") is not None else None
        _stage_vars = {k: v for k, v in env.items() if os.environ.get(k) != v}
    return dict(_stage_vars)


def prepare(env: dict[str, str], paths: list[str] | None = None, torch_cuda: str | None = None) -> str | None:
    """Point env's CUDA_HOME at a toolkit assembled from the NVIDIA wheels on a machine with none of its own;
    returns what it did in one line (None: nothing to do)."""
    if env.get("CUDA_HOME") or env.get("CUDA_PATH") or shutil.which("nvcc", path=env.get("PATH")):
        return None
    roots = wheel_roots(paths)
    if not roots:
        return None
    home = assemble(roots, Path(tempfile.gettempdir()) / f"runner-cuda-{roots[0].name}-{os.getuid()}")
    if home is None:
        return None
    env["CUDA_HOME"] = str(home)
    said = f"CUDA_HOME={home} (the lock's NVIDIA wheels, for DeepSpeed's run-time ops)"
    version = nvcc_version(home / "bin" / "nvcc")
    torch_cuda = torch_cuda if torch_cuda is not None else _torch_cuda()
    if version and torch_cuda and version != ".".join(torch_cuda.split(".")[:2]):
        env.setdefault("DS_SKIP_CUDA_CHECK", "1")
        said += f"; nvcc {version} beside torch's CUDA {torch_cuda}: DS_SKIP_CUDA_CHECK=1"
    return said


def _torch_cuda() -> str | None:
    """torch's CUDA version from its version file, without importing torch (the stage imports it later)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    match = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([\d.]+)['\"]", version.read_text(), re.M) \
        if version.is_file() else None
    return match.group(1) if match else None
