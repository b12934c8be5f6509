"""The runner's keys are typed and ranged; a config file that is not valid YAML or names a missing option
is one line with its file and line. All before anything runs (exit 2, nothing created)."""

import pytest

TYPOS_AND_TYPES = [
    (["eval.engin=vllm"], "unknown key 'eval.engin' (did you mean 'eval.engine'?)"),
    (["backend=modal", "gpu=h100", "backend.max_paralel=3"], "unknown key 'backend.max_paralel' (did you mean 'backend.max_parallel'?)"),
    (["stages.merg=false"], "unknown key 'stages.merg' (did you mean 'stages.merge'?)"),
    (["gpu.count=two"], "gpu.count expects a whole number, got 'two'"),
    (["dry_run=maybe"], "dry_run expects true or false, got 'maybe'"),
    (["eval.limit=abc"], "eval.limit expects a whole number, got 'abc'"),
    (["eval.engine=vlm"], "unknown eval.engine value 'vlm' (did you mean 'vllm'?)"),
]
RANGES = [
    (["eval.limit=0"], "eval.limit must be a whole number of at least 1, or null, got 0"),
    (["eval.max_new_tokens=-5"], "eval.max_new_tokens must be a whole number of at least 1, got -5"),
    (["gpu.count=9"], "gpu.count must be a whole number of at least 1 and at most 8, got 9"),
    (["backend=modal", "gpu=a100", "backend.max_parallel=0"], "backend.max_parallel must be a whole number of at least 1, got 0"),
    (["backend=modal", "gpu=a100", "backend.timeouts_min.eval=0"], "backend.timeouts_min.eval must be a number more than 0"),
    (["micro_batch_size=0"], "micro_batch_size must be a whole number of at least 1, or auto, got 0"),
    (["gradient_accumulation_steps=0"], "gradient_accumulation_steps must be a whole number of at least 1, got 0"),
    (["sequence_len=-1"], "sequence_len must be a whole number of at least 1, or auto, got -1"),
    (["learning_rate=0"], "learning_rate must be a number more than 0 and at most 1, or auto, got 0"),
    (["learning_rate=3"], "learning_rate must be a number more than 0 and at most 1, or auto, got 3"),
    (["num_epochs=0"], "num_epochs must be a number more than 0, or auto, got 0"),
    (["max_steps=0"], "max_steps must be a whole number of at least 1, or null, got 0"),
    (["lora_r=0"], "lora_r must be a whole number of at least 1, or null, got 0"),
    (["lora_alpha=-16"], "lora_alpha must be a number more than 0, or null, got -16"),
    (["lora_dropout=1.5"], "lora_dropout must be a number of at least 0 and below 1, or null, got 1.5"),
    (["warmup_ratio=1"], "warmup_ratio must be a number of at least 0 and below 1, or null, got 1"),
    (["save_steps=0"], "save_steps must be a number more than 0, or null, got 0"),
    (["evals_per_epoch=0"], "evals_per_epoch must be a whole number of at least 1, or null or auto, got 0"),
]


@pytest.mark.parametrize("overrides,message", TYPOS_AND_TYPES + RANGES)
def test_bad_runner_keys_and_numbers_are_one_line(plan, overrides, message):
    from runner.errors import UserError

    with pytest.raises(UserError) as error:
        plan(*overrides)
    assert str(error.value).startswith(message), str(error.value)


@pytest.fixture
def experiment(tmp_path):
    """experiment(name, text): an experiment file in a user's config folder (--config-dir), under tmp_path:
    tests never write into the repository."""
    folder = tmp_path / "conf"
    (folder / "experiment").mkdir(parents=True)

    def _write(name: str, text: str) -> list[str]:
        (folder / "experiment" / f"{name}.yaml").write_text(text)
        return ["--config-dir", str(folder), f"experiment={name}"]

    return _write


def test_an_experiment_that_is_not_yaml_is_one_line_with_file_and_line(cli, tmp_path, experiment):
    args = experiment("zz_broken", "# @package _global_\nlora_r: 8\nlearning_rate: [1e-4\n")
    result = cli(*args, f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: conf/experiment/zz_broken.yaml:4:")
    assert "did not find expected ',' or ']'" in result.stderr and not (tmp_path / "runs").exists()


def test_an_option_a_file_names_that_does_not_exist_is_one_line_with_file_and_line(cli, tmp_path, experiment):
    args = experiment("zz_typo", "# @package _global_\ndefaults:\n  - override /model: mistrall\nlora_r: 8\n")
    result = cli(*args, f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "runs").exists()
    assert result.stderr.strip() == "error: conf/experiment/zz_typo.yaml:3: unknown model option 'mistrall' (did you mean 'mistral'?)"
