"""The packing-GC plugin: the multipack sampler packs the same batches, without full collections."""

import gc

import numpy as np
import pytest
from torch.utils.data import SequentialSampler


def sampler(lengths):
    from axolotl.utils.samplers.multipack import MultipackBatchSampler

    return MultipackBatchSampler(SequentialSampler(range(len(lengths))), lengths=lengths, batch_max_len=4 * 512,
                                 batch_size=2, bin_size=200, drop_last=True, num_processes=1)


@pytest.fixture
def patched():
    from runner.integrations import packing_gc

    assert packing_gc.skip_sampler_gc() and not packing_gc.skip_sampler_gc()   # once
    try:
        yield
    finally:
        packing_gc.restore_sampler_gc()


def test_the_sampler_packs_the_same_batches_without_collecting(patched, monkeypatch):
    from runner.integrations import packing_gc

    lengths = np.random.default_rng(0).integers(20, 400, size=300)
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    with_plugin = (len(sampler(lengths)), list(sampler(lengths)))
    assert calls == []
    packing_gc.restore_sampler_gc()
    without = (len(sampler(lengths)), list(sampler(lengths)))
    assert len(calls) >= 5 and with_plugin == without   # axolotl's own: five or more per sampler
