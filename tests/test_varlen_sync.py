"""The varlen sync plugin returns what the functions it replaces return, fresh for every batch."""

import pytest
import torch


@pytest.fixture
def originals():
    """Patch the helpers for one test and hand it the originals; put them back afterwards."""
    import axolotl.monkeypatch.attention.sdpa_varlen as sdpa_varlen
    import transformers.modeling_flash_attention_utils as fa_utils

    from runner.integrations import varlen_sync

    ref_prepare, ref_packed = fa_utils.prepare_fa_kwargs_from_position_ids, sdpa_varlen._is_packed
    varlen_sync.patch_varlen_syncs()
    try:
        yield fa_utils, sdpa_varlen, ref_prepare, ref_packed
    finally:
        fa_utils.prepare_fa_kwargs_from_position_ids, sdpa_varlen._is_packed = ref_prepare, ref_packed
        varlen_sync._patched = False


def test_memoised_helpers_match_the_originals_per_batch(originals):
    fa_utils, sdpa_varlen, ref_prepare, ref_packed = originals
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        lengths = torch.randint(1, 300, (40,), generator=generator)
        position_ids = torch.cat([torch.arange(n) for n in lengths])[:4096].reshape(2, -1)
        for _layer in range(3):
            (cu_q, _), (max_q, max_k) = fa_utils.prepare_fa_kwargs_from_position_ids(position_ids)
            (ref_cu_q, _), (ref_max_q, _) = ref_prepare(position_ids)
            assert torch.equal(cu_q, ref_cu_q) and max_q == int(ref_max_q) == max_k
            assert isinstance(max_q, int)
            assert sdpa_varlen._is_packed(position_ids) == ref_packed(position_ids)
    assert sdpa_varlen._is_packed(torch.arange(4096)[None]) is False


def test_compiled_forward_sees_each_batch(originals):
    """Under torch.compile the plugin must not serve one batch's lengths to the next."""
    fa_utils, sdpa_varlen, ref_prepare, ref_packed = originals

    def forward(x, position_ids):
        for _layer in range(3):
            (cu_q, _), (max_q, _) = fa_utils.prepare_fa_kwargs_from_position_ids(position_ids)
            x = x * max_q + cu_q.sum() + int(sdpa_varlen._is_packed(position_ids))
        return x

    def reference(x, position_ids):
        for _layer in range(3):
            (cu_q, _), (max_q, _) = ref_prepare(position_ids)
            x = x * int(max_q) + cu_q.sum() + int(ref_packed(position_ids))
        return x

    compiled = torch.compile(forward, backend="aot_eager")
    for lengths in ([3, 5, 8], [10, 2, 4], [1, 1, 14], [16]):
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
        assert torch.equal(compiled(torch.ones(2), position_ids), reference(torch.ones(2), position_ids)), lengths
