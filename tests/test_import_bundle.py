"""runner.stages.import_bundle: a stage's imports from one bytecode file, never stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import importlib.metadata, inspect, json, sys
from importlib import resources
from runner.stages import import_bundle
bundle = import_bundle.install()
import pkg.sub
if bundle is None:
    print(json.dumps({"first_finder": type(sys.meta_path[0]).__name__}))
    sys.exit()
print(json.dumps({
    "value": pkg.sub.VALUE, "file": pkg.sub.__file__, "package_path": list(pkg.__path__),
    "loader": type(pkg.sub.__loader__).__name__, "served": bundle.served, "recorded": sorted(bundle.recorded),
    "data": resources.files("pkg").joinpath("data.txt").read_text(), "source": inspect.getsource(pkg.sub.value),
    "distributions": importlib.metadata.packages_distributions().get("pytest"),
    "first_finder": type(sys.meta_path[0]).__name__}))
"""


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("")
    (site / "pkg" / "data.txt").write_text("beside the code")
    (site / "pkg" / "sub.py").write_text("VALUE = 1\n\n\ndef value():\n    return VALUE\n")
    return site


def _child(site: Path, bundles: Path, **env: str) -> dict:
    work = site.parent / "work"
    work.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=work, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]),
                               "RUNNER_IMPORT_BUNDLE": str(bundles), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_first_process_records_and_the_next_imports_the_same_modules_from_the_file(site, tmp_path):
    bundles = tmp_path / "bundles"
    first = _child(site, bundles)
    assert first["served"] == 0 and {"pkg", "pkg.sub"} <= set(first["recorded"])
    assert len(list(bundles.glob("imports-*.bin"))) == 1   # written at exit
    second = _child(site, bundles)
    assert second["served"] >= 2 and second["recorded"] == []
    assert second["loader"] == "_BundledLoader" and first["loader"] == "_RecordingLoader"
    for key in ("value", "file", "package_path", "data", "source", "distributions"):
        assert second[key] == first[key], key   # the module as Python itself would give it
    assert second["file"] == str(site / "pkg" / "sub.py") and second["value"] == 1
    assert second["distributions"] == ["pytest"]


def test_an_edited_source_is_imported_as_usual_and_recorded_again(site, tmp_path):
    bundles = tmp_path / "bundles"
    _child(site, bundles)
    sub = site / "pkg" / "sub.py"
    sub.write_text("VALUE = 22\n\n\ndef value():\n    return VALUE\n")
    later = time.time() + 5
    os.utime(sub, (later, later))
    edited = _child(site, bundles)
    assert edited["value"] == 22 and edited["recorded"] == ["pkg.sub"]   # never the stale code
    again = _child(site, bundles)
    assert again["value"] == 22 and again["recorded"] == []


def test_a_package_installed_on_the_search_path_starts_the_file_afresh(site, tmp_path):
    bundles = tmp_path / "bundles"
    _child(site, bundles)
    (site / "newly_installed.py").write_text("")   # what pip does to a search path folder
    later = time.time() + 5
    os.utime(site, (later, later))
    assert _child(site, bundles)["served"] == 0


def test_off_with_zero_and_without_a_folder(site, tmp_path):
    assert _child(site, tmp_path / "bundles", RUNNER_IMPORT_BUNDLE="0")["first_finder"] != "Bundle"
    assert not (tmp_path / "bundles").exists()

    from runner.stages import import_bundle

    os.environ.pop(import_bundle.ENV, None)
    assert import_bundle.install(None) is None


def test_every_stage_process_gets_the_folder_and_blocked_packages_still_fail_first(tmp_path):
    from runner.stages import stage_env

    env = stage_env({"cache_dir": str(tmp_path)})
    assert env["RUNNER_IMPORT_BUNDLE"] == str(tmp_path / "imports")
    probe = ("import sys\nfrom runner.stages import import_bundle, unused_packages\nimport_bundle.install()\n"
             "unused_packages.block(['fla'])\nprint([type(f).__name__ for f in sys.meta_path][:2])\n"
             "try:\n    import fla\nexcept ImportError as e:\n    print('blocked')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RUNNER_IMPORT_BUNDLE": str(tmp_path / "b")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["['_Blocked', 'Bundle']", "blocked"]


def test_a_folder_keeps_the_files_of_the_environments_used_last(tmp_path):
    from runner.stages import import_bundle

    for age, name in enumerate(["a", "b", "c", "d", "e", "f"]):
        path = tmp_path / f"imports-{name}.bin"
        path.write_bytes(b"")
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))   # a: used last
    (tmp_path / "other.bin").write_bytes(b"")
    removed = import_bundle._prune(str(tmp_path), keep=4)
    assert sorted(Path(p).name for p in removed) == ["imports-e.bin", "imports-f.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imports-a.bin", "imports-b.bin", "imports-c.bin",
                                                           "imports-d.bin", "other.bin"]
