"""The memory model's automatic choices: largest micro batch without checkpointing, capped in tokens."""

import pytest

from runner import memory
from runner.errors import UserError


@pytest.fixture
def plan(plan, large_data):
    """Jobs with data enough to fill their micro batches: the memory model alone decides them."""
    return lambda *overrides: plan(f"dataset.path={large_data}", *overrides)


def test_auto_picks_the_largest_micro_batch_that_fits_without_checkpointing(plan):
    h100 = plan("model=llama2", "gpu=h100").config
    assert (h100["micro_batch_size"], h100["gradient_checkpointing"]) == (4, False)
    # 4 x 4096 tokens is the cap: the H200's extra memory does not buy a larger micro batch
    assert plan("model=llama2", "gpu=h200").config["micro_batch_size"] == 4


def test_auto_turns_checkpointing_on_only_when_nothing_fits_without(plan):
    a10g = plan("model=llama3", "gpu=a10g", "adapter=qlora").config
    assert a10g["gradient_checkpointing"] is True
    assert memory.estimate(a10g).total <= a10g["gpu"]["memory_gib"]
    assert not memory.resolve_memory_settings({**a10g, "micro_batch_size": 2, "gradient_checkpointing": False})


def test_explicit_settings_are_kept_and_checked(plan):
    job = plan("model=llama2", "gpu=h100", "micro_batch_size=2", "gradient_checkpointing=true")
    assert (job.config["micro_batch_size"], job.config["gradient_checkpointing"]) == (2, True)
    with pytest.raises(UserError, match=r"needs ~\d+ GiB per GPU but gpu=h100 has 80 GiB"):
        plan("model=llama2", "gpu=h100", "micro_batch_size=64")


def test_unpacked_rows_are_sized_by_the_longest_record_not_sequence_len():
    config = {"sequence_len": 4096, "sample_packing": False, "pad_to_sequence_len": False}
    assert memory.row_tokens(config, longest_record_chars=900) == 301
    assert memory.row_tokens({**config, "sample_packing": True}, longest_record_chars=900) == 4096


def test_zero3_shards_full_fine_tune_state_across_gpus(plan):
    config = plan("model=mistral", "adapter=none", "gpu=h100x8", "deepspeed=zero3").config
    sharded = memory.estimate(config)
    params = config["model_spec"]["params_b"] * 1e9
    # DeepSpeed's mixed precision: 16-bit weights and grads, fp32 master weights and Adam m, v; each GPU an eighth
    assert sharded.trainable_state == pytest.approx(params * (2 + 12) / 8 / memory.GIB)
    assert sharded.weights == pytest.approx(params * 2 / 8 / memory.GIB)


def test_full_fine_tune_without_deepspeed_keeps_its_state_in_the_load_precision(plan):
    # measured: Llama-2-7B, one H200, bf16, 4096-token rows, peak allocated (bench/RESULTS.md §11, §12)
    config = plan("model=llama2", "adapter=none", "gpu=h200", "micro_batch_size=1").config
    estimate = memory.estimate(config)
    params = config["model_spec"]["params_b"] * 1e9
    assert estimate.trainable_state == pytest.approx(params * (2 + 4) / memory.GIB)   # bf16 grads, bf16 m and v
    eight_bit = memory.estimate({**config, "optimizer": "adamw_bnb_8bit"})
    assert eight_bit.trainable_state == pytest.approx(params * (2 + 2) / memory.GIB)
    # the model errs high, never low: gradients and the activations they replace are both counted
    for micro_batch, checkpointing, measured in ((1, False, 64.2), (2, False, 88.2), (4, True, 55.6)):
        total = memory.estimate({**config, "micro_batch_size": micro_batch}, checkpointing).total
        assert measured < total < measured * 1.25, (micro_batch, checkpointing, total)


def test_auto_micro_batch_of_a_full_fine_tune_is_one_that_trained(plan):
    # on the H200, micro batch 2 trained at 88.2 GiB; 4 ran out of memory at its second step (>139 GiB)
    config = plan("model=llama2", "adapter=none", "gpu=h200").config
    assert (config["micro_batch_size"], config["gradient_checkpointing"]) == (2, False)
    # asking for 4 turns checkpointing on (55.6 GiB measured) instead of planning the out-of-memory run
    config = plan("model=llama2", "adapter=none", "gpu=h200", "micro_batch_size=4").config
    assert config["gradient_checkpointing"] is True
