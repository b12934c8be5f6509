"""axolotl plugin (prototype, NOT yet measured on a GPU): one host sync per batch for sdpa varlen.

Why: with `attn_implementation: sdpa` + sample packing, axolotl 0.19 routes attention through
torch's varlen_attn, and in every layer's forward it calls `_is_packed(position_ids)` (int(...) of a
GPU sum) and transformers' `prepare_fa_kwargs_from_position_ids` (nonzero(), then int(max_q),
int(max_k)): ~4 cudaStreamSynchronize per layer, ~140 per optimizer step on Llama-2-7B. The profile
of packed 4096 x mb 4 on an H100 showed the GPU busy only 69-77 % of the step, with
cudaStreamSynchronize the top CPU entry (bench/NOTES.md). position_ids is the same tensor object for
all layers of one forward, so both results can be computed once per batch.

Enable with `plugins: [..., bench.varlen_sync_plugin.VarlenSyncPlugin]`. It patches at plugin
registration (config load), i.e. before axolotl builds its varlen wrapper, which binds
`prepare_fa_kwargs_from_position_ids` when it is built.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

_PATCHED = False


def patch_varlen_syncs() -> None:
    """Memoise the two per-layer helpers on the identity of the position_ids tensor."""
    global _PATCHED
    if _PATCHED:
        return
    import transformers.modeling_flash_attention_utils as fa_utils

    import axolotl.monkeypatch.attention.sdpa_varlen as sdpa_varlen

    original_prepare = fa_utils.prepare_fa_kwargs_from_position_ids
    original_is_packed = sdpa_varlen._is_packed
    # Holding the last position_ids keeps it alive, so a new batch can never reuse its id/address.
    last: dict = {}

    def prepare_once(position_ids):
        if last.get("prepare_key") is position_ids:
            return last["prepare"]
        (cu_q, cu_k), (max_q, max_k) = original_prepare(position_ids)
        result = ((cu_q, cu_k), (int(max_q), int(max_k)))  # python ints: no sync in later layers
        last["prepare_key"], last["prepare"] = position_ids, result
        return result

    def is_packed_once(position_ids):
        if last.get("packed_key") is position_ids:
            return last["packed"]
        result = original_is_packed(position_ids)
        last["packed_key"], last["packed"] = position_ids, result
        return result

    fa_utils.prepare_fa_kwargs_from_position_ids = prepare_once
    sdpa_varlen._is_packed = is_packed_once
    _PATCHED = True


class VarlenSyncPlugin(BasePlugin):
    def register(self, cfg):
        patch_varlen_syncs()


if __name__ == "__main__":  # self-check on CPU: same results as the originals, fresh per batch
    import torch
    import transformers.modeling_flash_attention_utils as fa_utils

    import axolotl.monkeypatch.attention.sdpa_varlen as sdpa_varlen

    ref_prepare, ref_packed = fa_utils.prepare_fa_kwargs_from_position_ids, sdpa_varlen._is_packed
    patch_varlen_syncs()
    for _ in range(50):
        lengths = torch.randint(1, 300, (40,))
        pid = torch.cat([torch.arange(n) for n in lengths])[:4096].reshape(2, -1)
        for _layer in range(3):
            (cq, _), (mq, mk) = fa_utils.prepare_fa_kwargs_from_position_ids(pid)
            (rq, _), (rmq, _) = ref_prepare(pid)
            assert torch.equal(cq, rq) and mq == int(rmq) == mk and isinstance(mq, int)
            assert sdpa_varlen._is_packed(pid) == ref_packed(pid)
    single = torch.arange(4096)[None]
    assert sdpa_varlen._is_packed(single) is False
    print("varlen_sync_plugin self-check ok")
