"""The benchmarks' own pieces: the GPU benchmark's recipes plan as `python -m runner` would plan them, its
meter counts the parameters a model stands for (not the bytes it stores), and the engine agreement check."""

import json
import sys

import pytest
import torch

from conftest import ROOT

if str(ROOT) not in sys.path:   # `bench` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))


def test_a_4bit_weight_counts_as_the_matrix_it_stands_for():
    bnb = pytest.importorskip("bitsandbytes")
    from bench.throughput_plugin import logical_numel

    weight = bnb.nn.Params4bit(torch.randn(32, 64), requires_grad=False, quant_type="nf4")._quantize("cpu")
    assert weight.numel() == 32 * 64 // 2          # two 4-bit values a stored byte
    assert logical_numel(weight) == 32 * 64
    plain = torch.nn.Parameter(torch.randn(8, 4))
    assert logical_numel(plain) == 32
    plain.ds_numel = 4096                          # a ZeRO-3 shard of a larger matrix
    assert logical_numel(plain) == 4096


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_every_recipe_plans(gpu):
    from bench.gpu_bench import recipes
    from runner.compose import expand_overrides
    from runner.plan import plan_job

    table = recipes(gpu)
    assert {"seed", "default", "qlora", "seed_qlora", "full_zero3"} <= set(table)
    for name, overrides in table.items():
        job = plan_job(expand_overrides(["model=llama2", *overrides], multirun=False)[0])
        config = job.config
        if name in ("qlora", "seed_qlora"):
            assert (config["adapter"], config["load_in_4bit"]) == ("qlora", True), name
        if name == "full_zero3":
            assert config["adapter"] is None and job.compute.processes == 2
            assert config["deepspeed"]["zero_optimization"]["stage"] == 3
        if name.startswith("seed"):
            assert (config["sample_packing"], config["micro_batch_size"]) == (False, 32), name


def test_engine_agreement_compares_engines_on_the_same_prompt_ids(plan, tmp_path):
    """Two passes of the transformers engine over a run's held-out prompts agree on every answer."""
    from bench.engine_agreement import main
    from test_eval_stage import QUICK, build_tiny, make_run

    tiny = build_tiny(tmp_path / "tiny")
    folder = make_run(plan, tmp_path, tiny, eval_settings=QUICK)
    out = tmp_path / "agreement.jsonl"
    assert main([str(folder.path), "--engines", "transformers,transformers", "--limit", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["n"] == 4 and set(record["engines"]) == {"transformers#1", "transformers#2"}
    second = record["engines"]["transformers#2"]
    assert second["identical_to_transformers#1"] == 1.0 and second["first_differences"] == []
    assert second["generated_tokens"] >= 4 and second["generate_tok_s"] > 0
    assert main([str(folder.path), "--engines", "transformers"]) == 2   # one engine: nothing to compare


def test_a_wheels_needs_on_the_gpu_target_leave_extras_and_other_platforms_out(tmp_path):
    import zipfile

    from bench.stack_wheels import wheel_requires

    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo-1.0.dist-info/METADATA", "\n".join([
            "Metadata-Version: 2.1", "Name: demo", "Version: 1.0",
            "Requires-Dist: Liger_Kernel>=0.8",
            "Requires-Dist: triton; sys_platform == 'linux'",
            "Requires-Dist: pywin32; sys_platform == 'win32'",
            "Requires-Dist: tomli; python_version < '3.11'",
            "Requires-Dist: vllm; extra == 'vllm'", ""]))
    assert wheel_requires(wheel) == {"liger-kernel", "triton"}
