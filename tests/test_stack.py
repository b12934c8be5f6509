"""One GPU stack: runner/stack/gpu.lock pins every package once; every Modal image installs exactly that file
on a base Modal builds itself; the lock still resolves (pip, against the package index) to itself."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT
from runner.stack import LOCK, PIP_INSTALL_OPTIONS, REQUIREMENTS, canonical, read_lock

import modal  # a hard dependency: a broken install fails here, not as skips
from modal._utils.async_utils import synchronizer  # noqa: E402

from runner.backends import modal_app  # noqa: E402

BUILDERS = ("2024.10", "2025.06")   # Modal's image builder versions a workspace may use
LOCK_INSTALL = f"RUN python -m pip install -r /.requirements.txt {PIP_INSTALL_OPTIONS}"
# Modal's own base layer (debian_slim): compilers for Triton/DeepSpeed, and its packaging tools
MODAL_BASE_INSTALL = "RUN pip install --upgrade pip wheel uv"


def layers(image, builder: str) -> list[tuple[list[str], dict[str, str]]]:
    """The Dockerfile commands and context files of every layer of a Modal image, base first, as Modal
    itself would send them (modal 1.3 keeps each layer's build function in its loader's closure)."""
    img = synchronizer._translate_in(image)
    cells = dict(zip(img._load.__code__.co_freevars, [c.cell_contents for c in img._load.__closure__ or []]))
    found = []
    if "base_image" in cells:
        found += layers(cells["base_image"], builder)
    for base in (cells.get("base_images") or {}).values():
        found += layers(base, builder)
    if cells.get("dockerfile_function"):
        spec = cells["dockerfile_function"](builder)
        found.append((list(spec.commands), dict(spec.context_files)))
    return found


def requirement_names(path: str) -> set[str]:
    return {canonical(re.split(r"[=<>~! ;\[]", line.strip())[0]) for line in open(path)
            if line.strip() and not line.startswith(("#", "-"))}


def images_in_use() -> dict[str, object]:
    """Every function's and class's image, in the stages' app and the serving app (with a run to serve)."""
    import importlib
    import os

    from runner import serve

    os.environ["RUNNER_SERVE_RUN"] = "20261201-000000-tiny-lora-abcd"
    try:
        serving = importlib.reload(serve)
        used = {}
        for app in (modal_app.app, serving.app):
            for name, obj in app.registered_functions.items():   # classes appear as "Name.*" service functions
                used[f"{app.name}:{name}"] = synchronizer._translate_in(obj)._spec.image
    finally:
        del os.environ["RUNNER_SERVE_RUN"]
        importlib.reload(serve)   # as other tests import it: no run to serve
    return used


def test_the_lock_pins_every_package_once_with_its_hash():
    lock = read_lock()
    assert (lock.python, lock.platform) == ("3.12", "manylinux_2_36_x86_64")
    assert len(lock.pins) > 300
    for pin in lock.pins.values():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", pin.version), pin
        assert pin.hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), pin
    names = [canonical(line.split("==")[0]) for line in LOCK.read_text().splitlines() if "==" in line]
    assert len(names) == len(set(names)) == len(lock.pins)
    # the hand-written top level is in the lock at the same versions
    for line in REQUIREMENTS.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            assert lock.version(name) == version, name
    assert lock.version("torch") == "2.11.0" and lock.cuda == "13.0"
    assert {"deepspeed", "langdetect"} <= {key for key, pin in lock.pins.items() if pin.sdist}


def test_the_dry_run_names_the_stack():
    summary = read_lock().summary()
    assert summary.startswith("Python 3.12, torch 2.11.0 (CUDA 13.0), axolotl 0.19.0, vLLM 0.23.0, transformers 5.16.1")
    assert summary.endswith("packages pinned in runner/stack/gpu.lock")


def test_every_function_runs_in_the_one_image():
    used = images_in_use()
    assert len(used) >= 8   # five stage classes, the sweep, serve's complete and web server
    stages = layers(modal_app.image, "2025.06")
    for name, image in used.items():
        steps = layers(image, "2025.06")
        # the serving app adds its own settings (which run, which GPU) to the project layer's environment,
        # before the project's files (modal_app.project_image: Modal allows no build step after them)
        own, extra = stages[-1][0], steps[-1][0][len(stages[-1][0]):]
        assert steps == stages or (steps[:-1] == stages[:-1] and steps[-1][0][:len(own)] == own
                                   and extra and all(c.startswith("ENV RUNNER_SERVE_") for c in extra)), name


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_image_installs_exactly_the_lock_on_modals_own_base(builder):
    """No registry tag to guess, nothing resolved at build time, nothing installed besides the lock (Modal's
    own base layer aside, whose client requirements the lock pins too, so its versions win)."""
    for image in {id(i): i for i in [modal_app.image, *images_in_use().values()]}.values():
        steps = layers(image, builder)
        base, *ours = steps
        assert base[0][0].startswith("FROM python:3.12.") and base[0][0].endswith("-slim-bookworm"), base[0][0]
        modal_requirements = [path for path in base[1].values() if "requirements" in path]
        for path in modal_requirements:   # builders before 2025.06 install Modal's client deps here
            assert requirement_names(path) <= set(read_lock().pins), requirement_names(path) - set(read_lock().pins)
        installs = [cmd for commands, _ in ours for cmd in commands
                    if re.search(r"\b(pip|uv|conda|micromamba|apt-get)\b.*\binstall\b", cmd)]
        assert installs == [LOCK_INSTALL], installs
        (context,) = [files for commands, files in ours if LOCK_INSTALL in commands]
        assert context == {"/.requirements.txt": str(LOCK)}
        assert all(cmd.startswith(("FROM base", "COPY /.requirements.txt", "ENV ", LOCK_INSTALL))
                   for commands, _ in ours for cmd in commands), ours
        assert MODAL_BASE_INSTALL in base[0] or builder < "2024.04"


@pytest.mark.slow
def test_the_lock_resolves_to_itself_for_cpython_312_on_linux():
    """pip's resolver (`install --dry-run --report`, target CPython 3.12 manylinux x86-64, the lock as
    constraints) picks exactly the locked versions and files. Needs the package index; skipped without."""
    result = subprocess.run([sys.executable, "-m", "runner.stack.lock", "--check"], capture_output=True, text=True,
                            cwd=ROOT, timeout=900)
    if result.returncode == 3:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exactly as locked" in result.stdout
