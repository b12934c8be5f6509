"""An explicit save or eval schedule replaces the per-epoch defaults, so that axolotl follows it.

axolotl turns `saves_per_epoch` into a fractional `save_steps` that overrides `save_strategy`: with the
default `saves_per_epoch: 1`, `save_strategy=no` still wrote a checkpoint, every step once `max_steps`
was below `num_epochs` (found when the GPU benchmark saved a checkpoint each step, bench/RESULTS.md).
"""

import pytest

from runner.settings import split_config


def test_per_epoch_defaults_stay_when_no_schedule_is_set(plan):
    # evals_per_epoch auto: about three held-out evaluations a run (the tiny default trains 2 epochs)
    config = plan().config
    assert config["saves_per_epoch"] == 1 and config["evals_per_epoch"] == 2


@pytest.mark.parametrize("override", ["save_strategy=no", "save_strategy=epoch", "save_steps=50"])
def test_an_explicit_save_schedule_replaces_saves_per_epoch(plan, override):
    config = plan(override).config
    assert config["saves_per_epoch"] is None
    assert config["evals_per_epoch"] == 2


@pytest.mark.parametrize("override", ["eval_strategy=no", "eval_steps=10"])
def test_an_explicit_eval_schedule_replaces_evals_per_epoch(plan, override):
    config = plan(override).config
    assert config["evals_per_epoch"] is None
    assert config["saves_per_epoch"] == 1


def test_axolotl_accepts_save_steps_only_once_saves_per_epoch_is_gone(plan):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    capabilities = {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_75"}
    axolotl_config = split_config(plan("save_steps=50").config)[1]
    validate_config(DictDefault(axolotl_config), capabilities=capabilities, env_capabilities={"torch_version": "2.8.0"})
    with pytest.raises(ValueError, match="mutually exclusive"):
        validate_config(DictDefault({**axolotl_config, "saves_per_epoch": 1}), capabilities=capabilities,
                        env_capabilities={"torch_version": "2.8.0"})


def test_small_data_is_tokenised_in_the_stage_process(plan):
    """datasets 4 spawns a pool even for num_proc=1, whose workers import torch and axolotl again (3 000
    records: preprocess 58 s → 16 s with 0 on 2 cores); `auto` keeps small data in-process, axolotl's save too."""
    from runner.stages import stage_env

    config = plan().config
    assert config["dataset_num_proc"] == 0 and split_config(config)[1]["dataset_num_proc"] == 0
    assert stage_env(config)["AXOLOTL_DATASET_NUM_PROC"] == "0"
    pinned = plan("dataset_num_proc=4").config
    assert pinned["dataset_num_proc"] == 4 and "AXOLOTL_DATASET_NUM_PROC" not in stage_env(pinned)
