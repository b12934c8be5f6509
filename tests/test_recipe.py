"""The gpu group describes hardware; the training recipe is its own group, chosen from the card by default."""

import yaml

from conftest import ROOT

DATA_PIPELINE = ("sequence_len", "sample_packing", "pad_to_sequence_len", "micro_batch_size")


def test_gpu_options_hold_hardware_only():
    for path in sorted((ROOT / "conf" / "gpu").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= {"defaults", "gpu"}, f"{path.name} sets {keys - {'defaults', 'gpu'}}"


def test_the_card_chooses_the_default_recipe(plan):
    assert plan().choices["recipe"] == "cpu"
    assert plan("gpu=t4", "model=pythia").choices["recipe"] == "fp16"
    job = plan("gpu=h100", "model=llama2")
    assert job.choices["recipe"] == "packed_bf16" and job.config["sample_packing"] is True


def test_recipe_seed_runs_the_seeds_recipe_on_any_card(plan):
    for gpu in ("a10g", "h100", "h200"):
        job = plan(f"gpu={gpu}", "model=llama2", "recipe=seed", "adapter=qlora")
        config = job.config
        assert job.choices == {**job.choices, "gpu": gpu, "recipe": "seed"}
        assert (config["sample_packing"], config["micro_batch_size"], config["gradient_checkpointing"]) == (False, 32, True)
        # none of the packing recipe's plugins: only the runner's own (start-up, no trainer evaluation of what
        # the eval stage scores, graceful stop)
        assert config["plugins"] == ["runner.integrations.startup.StartupPlugin",
                                     "runner.integrations.last_evaluation.LastEvaluationPlugin",
                                     "runner.integrations.graceful_stop.GracefulStopPlugin"] and "liger_rope" not in config


def test_sweeping_the_card_with_a_fixed_recipe_keeps_the_data_pipeline(plan):
    from runner.plan import plan_jobs

    jobs = plan_jobs(["gpu=a100,h100x2", "model=llama2", "recipe=seed"], multirun=True)
    pipelines = {tuple(job.config[key] for key in DATA_PIPELINE) for job in jobs}
    assert len(jobs) == 2 and len(pipelines) == 1
    # by default each card brings its own recipe, and the job lines say so
    jobs = plan_jobs(["gpu=t4,h100", "model=pythia"], multirun=True)
    assert [job.choices["recipe"] for job in jobs] == ["fp16", "packed_bf16"]


def test_a_full_fine_tune_turns_the_lora_kernels_off(plan):
    # axolotl's fused LoRA kernels stop a model without LoRA layers at load ("Model must be a PeftModelForCausalLM")
    import pytest

    from runner.errors import UserError

    config = plan("gpu=h200", "model=llama2", "adapter=none").config
    assert not any(config[key] for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"))
    assert plan("gpu=h200", "model=llama2").config["lora_qkv_kernel"] is True   # LoRA keeps them
    with pytest.raises(UserError, match="lora_mlp_kernel=true needs an adapter"):
        plan("gpu=h200", "model=llama2", "adapter=none", "lora_mlp_kernel=true")
