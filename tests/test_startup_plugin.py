"""The start-up plugin (runner.integrations.startup): the same op sources and distribution map, cheaper, and
no evaluation before the first step. Each check runs in a fresh interpreter: the patches are process-wide."""

import json
import re
import subprocess
import sys
import textwrap


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_op_sources_and_the_distribution_map_are_what_the_originals_give():
    found = run_python("""
        import importlib.metadata, json, torch, transformers
        import torch._library.utils as utils
        from runner.integrations import startup

        def caller():   # the registering code's view: get_source(1) names the line that called it
            return utils.get_source(1)

        before = caller()
        fresh = importlib.metadata.packages_distributions()
        patched = (startup.cheap_op_sources(), startup.one_distribution_map())
        again = (startup.cheap_op_sources(), startup.one_distribution_map())
        after = caller()
        shared = importlib.metadata.packages_distributions()
        from transformers.utils import import_utils

        lib = torch.library.Library("startup_test", "DEF")
        lib.define("twice(Tensor x) -> Tensor")
        torch.library.register_fake("startup_test::twice", lambda x: torch.empty_like(x), lib=lib)
        import gc
        gc.disable()   # as runner.stages.boot leaves it
        startup.StartupPlugin().register({})
        print(json.dumps({"collecting": gc.isenabled(), "frozen": gc.get_freeze_count(), "before": before, "after": after, "patched": patched, "again": again,
                          "same_map": shared == fresh, "reused": shared is import_utils.PACKAGE_DISTRIBUTION_MAPPING,
                          "torch_listed": "torch" in shared.get("torch", [])}))
    """)
    assert found["patched"] == [True, True] and found["again"] == [False, False]   # once per process
    assert found["before"] == found["after"] and re.fullmatch(r"<string>:\d+", found["before"])   # the caller's line
    assert found["same_map"] and found["reused"] and found["torch_listed"]
    assert found["collecting"] and found["frozen"] > 100_000   # back on, torch's and transformers' objects out of reach


def test_the_trainer_does_not_evaluate_before_its_first_step():
    from runner.integrations.startup import StartupPlugin

    assert StartupPlugin().get_training_args({}) == {"eval_on_start": False}


def test_boot_runs_a_module_as_python_m_does_with_the_collector_paused_for_the_start_up_plugin(tmp_path):
    import os
    from pathlib import Path

    (tmp_path / "bootprobe.py").write_text(
        "import gc, json, sys\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps({'argv': sys.argv, 'collecting': gc.isenabled(), 'spec': __spec__.name}))\n")
    with_plugin, without = tmp_path / "with.yml", tmp_path / "without.yml"
    with_plugin.write_text("plugins:\n  - runner.integrations.graceful_stop.GracefulStopPlugin\n"
                           "  - runner.integrations.startup.StartupPlugin\n")
    without.write_text("base_model: x\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}

    def probe(*command):
        done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    plain = probe("bootprobe", str(with_plugin))
    booted = probe("runner.stages.boot", "bootprobe", str(with_plugin))
    assert booted["argv"] == plain["argv"] and booted["spec"] == plain["spec"] == "bootprobe"
    assert plain["collecting"] and not booted["collecting"]   # the plugin turns it back on once registered
    assert probe("runner.stages.boot", "bootprobe", str(without))["collecting"]   # no plugin: never paused


def test_the_set_up_is_frozen_out_of_later_full_collections_until_exit():
    import gc

    from runner.integrations import startup

    try:
        startup.freeze_alive("test")
        frozen = gc.get_freeze_count()
        assert frozen > 10_000   # torch and the rest, imported by now
        gc.collect()
        assert gc.get_freeze_count() == frozen   # a full collection leaves them where they are
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_the_optional_packages_a_job_does_not_use_are_the_ones_hidden(tmp_path):
    from runner.compose import expand_overrides
    from runner.plan import plan_job
    from runner.stages.unused_packages import unused

    def hidden(*overrides):
        return unused(plan_job(expand_overrides(list(overrides), multirun=False)[0]).axolotl_config)

    assert hidden() == ["sklearn", "torchao", "deepspeed", "mlflow", "wandb", "bitsandbytes"]   # the default LoRA job uses none
    assert "bitsandbytes" not in hidden("adapter=qlora", "gpu=h100") and "bitsandbytes" not in hidden("optimizer=adamw_bnb_8bit")
    assert "wandb" not in hidden("tracking=wandb") and "wandb" in hidden("tracking=mlflow")
    assert "deepspeed" not in hidden("gpu=a100x4", "deepspeed=zero3")
    assert "mlflow" not in hidden("tracking=mlflow")
    quantized = tmp_path / "model"   # a checkpoint quantized with torchao needs it to load
    quantized.mkdir()
    (quantized / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "torchao"}}))
    assert "torchao" not in unused({"base_model": str(quantized)})
    (quantized / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "bitsandbytes"}}))
    assert "bitsandbytes" not in unused({"base_model": str(quantized)})   # a checkpoint saved in 4 or 8 bits
    assert "torchao" not in unused({"optimizer": "adamw_torch_8bit"}) and "sklearn" not in unused({"do_bench_eval": True})


def test_a_hidden_package_is_skipped_by_availability_checks_and_still_imports_when_asked():
    found = run_python("""
        import json, sys
        from runner.stages import unused_packages
        hidden = unused_packages.hide(["sklearn", "torchao"])
        import transformers.generation.candidate_generator, transformers.quantizers.auto
        from transformers.utils import is_sklearn_available, is_torchao_available
        skipped = {name: name in sys.modules for name in ("sklearn", "torchao")}
        import sklearn   # an explicit import is not an availability check
        print(json.dumps({"hidden": hidden, "again": unused_packages.hide(["sklearn"]), "loaded": skipped,
                          "available": [is_sklearn_available(), is_torchao_available()], "imports": sklearn.__name__}))
    """)
    assert found["hidden"] == ["sklearn", "torchao"] and found["again"] == []
    assert found["loaded"] == {"sklearn": False, "torchao": False} and found["available"] == [False, False]
    assert found["imports"] == "sklearn"


def test_packages_imported_without_asking_are_blocked_only_where_the_job_cannot_use_them(tmp_path):
    from runner.stages.unused_packages import BLOCKED

    def blocked(config_json, **config):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config_json))
        return sorted(name for name, needed in BLOCKED.items() if not needed({"base_model": str(folder), **config}))

    assert blocked({"model_type": "llama"}) == ["fla", "scipy", "torchao", "torchvision"]   # a text model, attention only
    assert blocked({"model_type": "qwen3_next"}) == ["scipy", "torchao", "torchvision"]   # linear-attention layers: fla's
    assert blocked({"model_type": "llava", "vision_config": {}}) == ["fla", "scipy", "torchao"]   # images: torchvision's
    assert blocked({"model_type": "llama"}, processor_type="AutoProcessor") == ["fla", "scipy", "torchao"]
    assert blocked({"model_type": "llama"}, do_bench_eval=True) == ["fla", "torchao", "torchvision"]   # scikit-learn needs SciPy
    assert blocked({"model_type": "llama"}, optimizer="ao_adamw_fp8") == ["fla", "scipy", "torchvision"]
    assert blocked({"model_type": "llama", "quantization_config": {"quant_method": "torchao"}}) == ["fla", "scipy", "torchvision"]
    assert sorted(n for n, needed in BLOCKED.items() if not needed({"base_model": "not/here"})) == ["scipy", "torchao", "torchvision"]


def test_a_blocked_package_imports_as_if_not_installed_and_transformers_falls_back():
    found = run_python("""
        import json, sys
        from runner.stages import unused_packages
        blocked = unused_packages.block(["fla", "torchvision"])
        try:
            import torchvision
            error = None
        except ImportError as e:
            error = type(e).__name__
        import importlib.util
        import transformers.models.llama.modeling_llama   # its kernel decorators ask for fla: torch code instead
        from transformers.utils import is_torchvision_available
        print(json.dumps({"blocked": blocked, "error": error, "again": unused_packages.block(["fla"]),
                          "spec": importlib.util.find_spec("torchvision") is None,
                          "available": is_torchvision_available(),
                          "loaded": [name in sys.modules for name in ("fla", "torchvision")]}))
    """)
    assert found["blocked"] == ["fla", "torchvision"] and found["error"] == "ModuleNotFoundError" and found["again"] == []
    assert found["available"] is False and found["loaded"] == [False, False]


def test_a_deferred_package_loads_on_first_use_and_not_for_tools_that_walk_every_module():
    found = run_python("""
        import inspect, json, sys
        from runner.stages import unused_packages
        deferred = unused_packages.defer(["wandb"])
        import wandb
        inspect.getmodule(inspect)   # walks every loaded module's __file__ (torch's op registration does)
        before = sum(name.startswith("wandb.") for name in sys.modules)
        run = wandb.run               # first use: the real module
        print(json.dumps({"deferred": deferred, "before": before, "after": sum(n.startswith("wandb.") for n in sys.modules),
                          "run": run is None, "again": unused_packages.defer(["wandb"]),
                          "kind": type(sys.modules["wandb"]).__name__}))
    """)
    assert found["deferred"] == ["wandb"] and found["before"] == 0 and found["after"] > 50
    assert found["run"] and found["again"] == [] and found["kind"] == "module"
    assert unused_packages_of({"wandb_project": "p", "adapter": "qlora"}) == []
    assert unused_packages_of({}) == ["wandb", "bitsandbytes"]


def unused_packages_of(config):
    from runner.stages.unused_packages import DEFERRED, unused

    return [name for name in unused(config) if name in DEFERRED]
