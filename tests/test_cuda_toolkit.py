"""The CUDA toolkit a DeepSpeed job gets from the lock's NVIDIA wheels (runner/stages/cuda_toolkit.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from runner.stack.lock import read_lock
from runner.stages import cuda_toolkit

ROOT = Path(__file__).resolve().parents[1]
NVCC = "#!/bin/sh\necho 'Cuda compilation tools, release 13.2, V13.2.86'\n"


def _file(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _wheels(tmp_path: Path) -> tuple[Path, Path]:
    """Two import paths as on a machine whose torch brought the runtime wheels and /tmp/site the compiler's:
    nvidia/cu13 in both, each with its share of the files."""
    system, extra = tmp_path / "system", tmp_path / "extra"
    _file(system / "nvidia/cu13/include/cuda_runtime.h")
    _file(system / "nvidia/cu13/lib/libcudart.so.13")
    _file(system / "nvidia/cu13/lib/libcurand.so.10")
    _file(system / "nvidia/cu13/lib/libcublas.so.13.1")
    _file(extra / "nvidia/cu13/bin/nvcc", NVCC)
    (extra / "nvidia/cu13/bin/nvcc").chmod(stat.S_IRWXU)
    _file(extra / "nvidia/cu13/include/crt/host_config.h")
    _file(extra / "nvidia/cu12/include/cuda_runtime.h")   # an older CUDA's wheels: not mixed in
    _file(extra / "nvidia/cu12/lib/libnvrtc.so.12")
    return system, extra


def test_a_machine_without_a_toolkit_gets_one_folder_from_every_wheel(tmp_path, monkeypatch):
    system, extra = _wheels(tmp_path)
    monkeypatch.setattr(cuda_toolkit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setattr(cuda_toolkit.shutil, "which", lambda name, path=None: None)
    env: dict[str, str] = {}
    said = cuda_toolkit.prepare(env, paths=[str(system), str(extra)], torch_cuda="13.0")
    home = Path(env["CUDA_HOME"])
    assert said.startswith(f"CUDA_HOME={home}") and "nvcc 13.2 beside torch's CUDA 13.0" in said
    assert env["DS_SKIP_CUDA_CHECK"] == "1"
    # what torch's cpp_extension and DeepSpeed's builder look for under CUDA_HOME
    assert (home / "bin/nvcc").resolve() == (extra / "nvidia/cu13/bin/nvcc").resolve()
    assert (home / "include/cuda_runtime.h").exists() and (home / "include/crt/host_config.h").exists()
    for lib in ("libcudart.so", "libcurand.so", "libcublas.so", "libcudart.so.13"):
        assert (home / "lib64" / lib).exists(), lib
    assert (home / "lib/libcurand.so").exists()   # DeepSpeed falls back to lib/ when lib64/ is missing
    assert not (home / "lib64/libnvrtc.so").exists()
    # another process of the same job reuses the folder (nvcc matching torch's CUDA: no check skipped)
    again: dict[str, str] = {}
    assert cuda_toolkit.prepare(again, paths=[str(system), str(extra)], torch_cuda="13.2")
    assert again == {"CUDA_HOME": str(home)}


def test_nothing_changes_on_a_machine_with_a_toolkit_of_its_own(tmp_path, monkeypatch):
    system, extra = _wheels(tmp_path)
    paths = [str(system), str(extra)]
    monkeypatch.setattr(cuda_toolkit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setattr(cuda_toolkit.shutil, "which", lambda name, path=None: None)
    env = {"CUDA_HOME": "/usr/local/cuda"}
    assert cuda_toolkit.prepare(env, paths=paths) is None
    assert env == {"CUDA_HOME": "/usr/local/cuda"}
    monkeypatch.setattr(cuda_toolkit.shutil, "which", lambda name, path=None: "/usr/bin/nvcc")
    assert cuda_toolkit.prepare({}, paths=paths) is None
    # no compiler among the wheels: nothing to point at
    monkeypatch.setattr(cuda_toolkit.shutil, "which", lambda name, path=None: None)
    assert cuda_toolkit.prepare({}, paths=[str(system)]) is None
    assert not (tmp_path / "tmp").exists()


def test_every_stage_gets_it_where_deepspeed_is_installed(tmp_path, monkeypatch):
    """Stage processes inherit it (runner.stages.stage_env); without DeepSpeed nothing is added."""
    from runner.stages import stage_env

    system, extra = _wheels(tmp_path)
    monkeypatch.setattr(cuda_toolkit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setattr(cuda_toolkit.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(cuda_toolkit.sys, "path", [str(system), str(extra)])
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(cuda_toolkit, "_stage_vars", None)
    monkeypatch.setattr(cuda_toolkit.importlib.util, "find_spec", lambda name: object() if name == "deepspeed" else None)
    env = stage_env({"cache_dir": str(tmp_path / "cache")})
    assert Path(env["CUDA_HOME"]).name.startswith("runner-cuda-cu13") and (Path(env["CUDA_HOME"]) / "bin/nvcc").exists()
    monkeypatch.setattr(cuda_toolkit, "_stage_vars", None)
    monkeypatch.setattr(cuda_toolkit.importlib.util, "find_spec", lambda name: None)
    assert "CUDA_HOME" not in stage_env({"cache_dir": str(tmp_path / "cache")})


def test_the_image_installs_every_piece_the_toolkit_is_made_of():
    """The stage image installs runner/stack/gpu.lock (runner/backends/modal_app.py): the compiler, the
    headers and the libraries that DeepSpeedCPUAdam's build needs are all pinned there."""
    pinned = set(read_lock(ROOT / "runner/stack/gpu.lock").pins)
    needed = {"nvidia-cuda-nvcc", "nvidia-cuda-runtime", "nvidia-cuda-crt", "nvidia-cuda-cccl", "nvidia-curand",
              "nvidia-cublas", "ninja", "deepspeed"}
    assert needed <= pinned, needed - pinned


def test_zero3_offload_steps_adam_with_deepspeeds_own_cpu_optimizer():
    """With offload, DeepSpeed refuses the trainer's optimizer (zero_force_ds_cpu_optimizer); the config names
    one so that DeepSpeed builds DeepSpeedCPUAdam, the op the toolkit above is for."""
    config = yaml.safe_load((ROOT / "conf/deepspeed/zero3_offload.yaml").read_text())["deepspeed"]
    assert config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert config["optimizer"]["type"].lower() == "adamw"
    assert set(config["optimizer"]["params"].values()) == {"auto"}


