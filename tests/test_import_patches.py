"""runner.stages.import_patches: what a stage process's imports did for nothing or again, patched as they load
and giving what the originals give. Each check runs in a fresh interpreter: the patches are process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.stages import import_bundle, import_patches, prepare

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, tmp_path: Path, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


TRANSFORMERS = """
    import json, marshal, pathlib, sys
    from runner.stages import import_bundle, import_patches
    bundle = import_bundle.install()
    patches = import_patches.install()
    import transformers
    from transformers.utils import import_utils
    auto_docstring = sys.modules["transformers.utils.auto_docstring"]
    from transformers.models.llama import modeling_llama
    models = pathlib.Path(transformers.__file__).parent / "models"
    kept = [k for k in bundle.derived if k.endswith("models models")]
    stored = marshal.loads(bundle.derived[kept[0]][1]) if kept else None   # as written to the file (transformers adds to what it gets)
    fresh = import_utils.define_import_structure.__wrapped__(models, prefix="models")   # transformers' own, anew
    import importlib.metadata
    print(json.dumps({"applied": sorted(patches.applied), "same": stored == fresh, "kept": kept,
                      "map": "importlib.metadata.packages_distributions" in bundle.derived,
                      "torch": importlib.metadata.packages_distributions().get("torch"),
                      "derived_now": len(bundle.derived_found), "llama": "LlamaForCausalLM" in dir(transformers),
                      "as_is": auto_docstring.auto_docstring(modeling_llama.LlamaModel) is modeling_llama.LlamaModel,
                      "doc": modeling_llama.LlamaForCausalLM.forward.__doc__ or ""}))
"""


def test_transformers_import_structure_is_kept_and_docstrings_are_left_as_written(tmp_path):
    first = run_python(TRANSFORMERS, tmp_path, RUNNER_IMPORT_BUNDLE=str(tmp_path / "bundles"))
    assert {"transformers.utils.auto_docstring", "transformers.utils.import_utils", "importlib.metadata"} <= set(first["applied"])
    assert first["map"] and first["torch"] == ["torch"]   # transformers' distribution map, kept in the same file
    assert first["same"] and first["llama"] and first["as_is"] and len(first["kept"]) == 1 and first["derived_now"] >= 1
    assert "Args:" not in first["doc"]   # the decorator no longer writes the argument table
    second = run_python(TRANSFORMERS, tmp_path, RUNNER_IMPORT_BUNDLE=str(tmp_path / "bundles"))
    assert second["same"] and second["derived_now"] == 0   # read back from the file, equal to what transformers builds
    assert second["torch"] == ["torch"]
    off = run_python(TRANSFORMERS.replace("patches.applied", "[] if patches is None else patches.applied"), tmp_path,
                     RUNNER_IMPORT_BUNDLE=str(tmp_path / "off"), RUNNER_IMPORT_PATCHES="0")
    assert off["applied"] == [] and "Args:" in off["doc"]


def test_a_remembered_value_is_derived_again_when_its_files_change(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_text("A = 1\n")
    (folder / "sub" / "b.py").write_text("B = 2\n")
    state = import_patches.tree_state(str(folder))
    calls = []

    def derive():
        calls.append(1)
        return {frozenset({"torch"}): {"a": {"A"}}}

    path = str(tmp_path / "bundle.bin")
    bundle = import_bundle.Bundle(path)
    assert bundle.remember("key", state, derive) == derive() and len(calls) == 2
    assert bundle.write()
    again = import_bundle.Bundle(path)
    assert again.remember("key", state, derive) == {frozenset({"torch"}): {"a": {"A"}}} and len(calls) == 2   # kept
    (folder / "sub" / "b.py").write_text("B = 22\n")   # an edited file: another state
    changed = import_patches.tree_state(str(folder))
    assert changed != state
    again.remember("key", changed, derive)
    assert len(calls) == 3


def test_the_sample_packer_is_compiled_once_into_numbas_cache(tmp_path):
    code = """
        import json
        import numpy as np
        from runner.stages import import_patches
        import_patches.install()
        from axolotl.utils.samplers import multipack
        lengths = np.array([300, 120, 900, 40, 512, 700, 80, 2000], dtype=np.int64)
        bins = multipack.pack_group(lengths, 0, 2048, 8, 4, True)
        print(json.dumps({"bins": [list(b) for b in bins], "python": multipack.pack_group.py_func(lengths, 0, 2048, 8, 4, True),
                          "hits": sum(multipack.pack_group.stats.cache_hits.values())}))
    """
    cache = tmp_path / "numba"
    first = run_python(code, tmp_path, NUMBA_CACHE_DIR=str(cache))
    assert list(cache.rglob("*.nbi")) and first["hits"] == 0 and first["bins"] == first["python"]
    second = run_python(code, tmp_path, NUMBA_CACHE_DIR=str(cache))
    assert second["hits"] == 1 and second["bins"] == first["bins"]


def test_op_registration_names_the_same_source_and_module_without_resolving_every_path(tmp_path):
    (tmp_path / "ops_here.py").write_text(textwrap.dedent("""
        import inspect, sys, torch
        import torch._library.utils as utils

        def where():   # get_source(1): the line that called it; getmodule: this module
            frame = sys._getframe(0)
            return [utils.get_source(1), f"{inspect.getframeinfo(frame).filename}:{frame.f_lineno}",
                    torch.library.inspect.getmodule(frame).__name__]

        HERE = where()
        lib = torch.library.Library("patch_test", "DEF")
        lib.define("twice(Tensor x) -> Tensor")
        torch.library.register_fake("patch_test::twice", lambda x: torch.empty_like(x), lib=lib)
    """))
    found = run_python("""
        import inspect, json, sys
        from runner.stages import import_patches
        patches = import_patches.install()
        import torch, ops_here
        print(json.dumps({"applied": sorted(patches.applied), "here": ops_here.HERE,
                          "main": torch.library.inspect.getmodule(sys._getframe(0)) is inspect.getmodule(sys._getframe(0)),
                          "other": torch.library.inspect.getsourcefile(import_patches.install)}))
    """, tmp_path, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    assert {"torch._library.utils", "torch.library"} <= set(found["applied"])
    assert found["here"][0] == found["here"][1] and found["here"][0].startswith(str(tmp_path / "ops_here.py:")) and found["here"][2] == "ops_here"
    assert found["main"] and found["other"].endswith("import_patches.py")   # the rest of inspect as it is


def test_a_local_base_model_folder_starts_no_prepare_process(tmp_path):
    spec = {"build": None}
    assert prepare.command(tmp_path, {"base_model": str(tmp_path), "model_spec": spec}) is None
    assert prepare.command(tmp_path, {"base_model": "org/model", "model_spec": spec})[-2:] == ["runner.stages.prepare", str(tmp_path)]
    assert prepare.command(tmp_path, {"base_model": str(tmp_path), "model_spec": {"build": "tiny"}}) is not None
