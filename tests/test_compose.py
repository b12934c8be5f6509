"""Every group option composes; overrides reach the axolotl config; experiments and sweeps expand."""

import pytest

from runner.compose import expand_overrides, group_options
from runner.errors import UserError
from runner.settings import RUNNER_KEYS

OPTIONS = group_options()
# options that need a GPU (or a file) to be valid on their own
NEEDS = {
    ("adapter", "qlora"): ["gpu=a100"],
    ("backend", "modal"): ["gpu=a100"],
    ("backend", "slurm"): ["gpu=a100"],
    ("recipe", "packed_bf16"): ["gpu=a100"],
    ("recipe", "seed"): ["gpu=a100"],
    ("recipe", "fp16"): ["gpu=t4"],
    ("dataset", "alpaca"): ["dataset.path=tests/data/alpaca.jsonl"],
    ("dataset", "chat_template"): ["dataset.path=tests/data/chat.jsonl"],
    ("dataset", "completion"): ["dataset.path=tests/data/completion.jsonl"],
    # config.json only (SmolLM2-135M's): model=auto reads the architecture off it
    ("model", "auto"): ["base_model=tests/data/small-llama", "gpu=a100"],
}
DEEPSPEED_GPU = {"none": "cpu", "zero3_offload": "a100", "zero1": "a100x2", "zero2": "a100x2", "zero3": "a100x2"}


def test_groups_have_the_designed_options():
    assert OPTIONS["model"] == sorted(["auto", "tiny", "codellama", "llama2", "llama3", "mistral", "mixtral", "pythia",
                                       "qwen2.5", "smollm2"])
    assert OPTIONS["adapter"] == ["lora", "none", "qlora"]
    assert OPTIONS["deepspeed"] == ["none", "zero1", "zero2", "zero3", "zero3_offload"]
    assert set(OPTIONS["gpu"]) == {"auto", "cpu", "t4", "l4", "a10g", "l40s", "a100-40gb", "a100", "a100x2", "a100x4",
                                   "a100x8", "h100", "h100x2", "h100x4", "h100x8", "h200", "h200x8", "b200x8"}
    assert OPTIONS["dataset"] == ["alpaca", "chat_template", "completion", "sqlqa"]
    assert OPTIONS["recipe"] == ["cpu", "fp16", "packed_bf16", "seed"]
    assert OPTIONS["backend"] == ["auto", "local", "modal", "slurm"]
    assert OPTIONS["hparams_search"] == ["sql_lora"]
    assert OPTIONS["tracking"] == ["mlflow", "none", "wandb"]


@pytest.mark.parametrize("group,option", [(g, o) for g in OPTIONS if g != "experiment" for o in OPTIONS[g]])
def test_every_group_option_composes_and_validates(plan, group, option):
    extra = NEEDS.get((group, option), [])
    if group == "deepspeed":
        extra = [f"gpu={DEEPSPEED_GPU[option]}"] + (["adapter=none"] if option == "zero3_offload" else [])
    if group == "model" and option not in ("tiny", "auto"):
        extra = ["gpu=h200x8", "deepspeed=zero3"] if option == "mixtral" else ["gpu=a100"]
    job = plan(f"{group}={option}", *extra)
    # gpu=auto plans the job with the option it chose (tests/test_gpu_choice.py)
    assert job.choices[group] == (job.composed.gpu_choice.chosen if (group, option) == ("gpu", "auto") else option)
    axolotl = job.axolotl_config
    assert not set(axolotl) & set(RUNNER_KEYS)
    assert axolotl["base_model"] and axolotl["datasets"] and axolotl["output_dir"].endswith("/outputs")


def test_gpu_option_sets_precision_and_processes(plan):
    t4 = plan("gpu=t4", "model=pythia")
    assert (t4.config["bf16"], t4.config["fp16"], t4.config["attn_implementation"]) == (False, True, "sdpa")
    a100x4 = plan("gpu=a100x4", "model=mistral")
    assert a100x4.compute.gpu_string == "A100-80GB:4" and a100x4.compute.processes == 4
    assert (a100x4.config["bf16"], a100x4.config["attn_implementation"], a100x4.config["sample_packing"]) == (True, "sdpa", True)
    assert "axolotl.integrations.liger.LigerPlugin" in a100x4.config["plugins"]
    assert isinstance(a100x4.config["micro_batch_size"], int)  # `auto` resolved by the memory model
    cpu = plan()
    assert cpu.compute.gpu_string is None and cpu.compute.processes == 1
    assert not any(cpu.config[k] for k in ("bf16", "fp16", "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel"))


def test_plain_overrides_reach_axolotl_keys_new_nested_and_lists(plan):
    job = plan("lora_r=32", "learning_rate=2e-4", "special_tokens.pad_token='<pad>'",
               "lora_target_modules=[q_proj,v_proj]", "max_steps=7", "stages.merge=false")
    axolotl = job.axolotl_config
    assert axolotl["lora_r"] == 32 and axolotl["learning_rate"] == 2e-4
    assert axolotl["special_tokens"] == {"pad_token": "<pad>"}
    assert axolotl["lora_target_modules"] == ["q_proj", "v_proj"]
    assert axolotl["max_steps"] == 7 and "stages" not in axolotl
    assert job.config["stages"]["merge"] is False
    assert job.overrides[0] == "lora_r=32"  # shown as written


def test_relative_paths_are_made_absolute_where_the_runner_started(plan, tmp_path, monkeypatch):
    # the stages run inside the run folder: a relative data file or model folder must not be looked up there
    from conftest import ROOT

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text((ROOT / "runner/data/sqlqa-test.jsonl").read_text())
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    job = plan("dataset.path=data/train.jsonl", "model=llama2", "base_model=my-model", "gpu=a100")
    assert job.config["dataset"]["path"] == str(tmp_path / "data" / "train.jsonl")
    assert job.axolotl_config["datasets"][0]["path"] == str(tmp_path / "data" / "train.jsonl")
    assert job.axolotl_config["base_model"] == str(tmp_path / "my-model")
    assert plan("model=llama2", "gpu=a100").axolotl_config["base_model"] == "meta-llama/Llama-2-7b-hf"   # a hub id stays


def test_command_line_beats_experiment_which_beats_groups(plan):
    job = plan("experiment=sqlqa_mistral", "lora_r=32", "gpu=a100x4")
    assert job.choices["model"] == "mistral" and job.choices["gpu"] == "a100x4"
    assert job.config["lora_r"] == 32 and job.config["sequence_len"] == 4096


def test_multirun_expands_the_cartesian_product_and_globs():
    jobs = expand_overrides(["lora_r=8,16,32", "gpu=a100x2,h100x4"], multirun=True)
    assert len(jobs) == 6
    assert jobs[0].display == ["lora_r=8", "gpu=a100x2"] and jobs[0].hydra == ["++lora_r=8", "gpu=a100x2"]
    experiments = expand_overrides(["experiment=glob(sqlqa_*)"], multirun=True)
    assert [j.display for j in experiments] == [["experiment=sqlqa_codellama"], ["experiment=sqlqa_mistral"]]


def test_unparseable_override_is_a_user_error():
    with pytest.raises(UserError, match="cannot parse override 'special_tokens.pad_token=<pad>'"):
        expand_overrides(["special_tokens.pad_token=<pad>"], multirun=False)


def test_sweep_without_multirun_is_refused():
    with pytest.raises(UserError, match="add --multirun"):
        expand_overrides(["lora_r=8,16"], multirun=False)


@pytest.mark.parametrize("experiment", OPTIONS["experiment"])
def test_every_experiment_dry_runs(cli, experiment):
    result = cli(f"experiment={experiment}", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert f"experiment={experiment}" in result.stdout
    assert "base_model:" in result.stdout and "# compute: backend=" in result.stdout


def test_experiments_hold_only_deltas():
    from runner.paths import EXPERIMENTS_DIR

    for path in EXPERIMENTS_DIR.glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# @package _global_"), path
        assert "base_model:" not in text, f"{path.name}: pick the model with `override /model`"


def test_model_auto_reads_the_architecture_off_config_json(plan):
    job = plan("model=auto", "base_model=tests/data/small-llama", "gpu=a100")
    spec = job.config["model_spec"]
    assert (spec["hidden_size"], spec["num_layers"], spec["num_heads"], spec["num_kv_heads"]) == (576, 30, 9, 3)
    assert spec["params_b"] == pytest.approx(0.1345, abs=1e-4) and spec["num_experts"] == 1   # SmolLM2-135M
    assert spec["source"].endswith("tests/data/small-llama config.json")
    assert job.axolotl_config["lora_target_linear"] is True and not job.axolotl_config.get("lora_target_modules")
    with pytest.raises(UserError, match="model=auto needs base_model"):
        plan("model=auto")
    # a base_model without a model group (or an experiment, which picks one) is model=auto
    assert plan("base_model=tests/data/small-llama", "gpu=a100").choices["model"] == "auto"
    assert plan("base_model=tests/data/small-llama", "model=smollm2", "gpu=a100").choices["model"] == "smollm2"
    assert plan().choices["model"] == "tiny"   # the embedded default
    with pytest.raises(UserError, match="base_model=no-such-org/no-model: no config.json to read"):
        plan("model=auto", "base_model=no-such-org/no-model", "gpu=a100")


def test_config_files_are_parsed_once_and_read_again_when_edited(tmp_path):
    """runner.compose keeps each YAML file Hydra parses (per process) and hands out copies; an edited file
    (size or modification time) is parsed again."""
    import os

    from hydra._internal.core_plugins.file_config_source import FileConfigSource

    from runner.compose import setup

    setup()
    (tmp_path / "a.yaml").write_text("x: 1\n")
    source = FileConfigSource(provider="test", path=str(tmp_path))
    first = source.load_config("a.yaml").config
    first.x = 99   # Hydra merges into what it loads: a copy each time
    assert source.load_config("a.yaml").config.x == 1
    (tmp_path / "a.yaml").write_text("x: 22\n")
    os.utime(tmp_path / "a.yaml", ns=(1, 1))
    assert source.load_config("a.yaml").config.x == 22
