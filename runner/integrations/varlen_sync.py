"""axolotl plugin: one host sync per batch, not four per layer, for packed attention.

With sample packing, axolotl 0.19 routes SDPA through torch's varlen attention and, in every layer's
forward, calls `_is_packed(position_ids)` and transformers' `prepare_fa_kwargs_from_position_ids`
(a nonzero() and two int() of GPU tensors): ~140 cudaStreamSynchronize per step on a 32-layer model,
which left an H100 idle a quarter of each step (bench/NOTES.md). All layers of one forward pass see
the same position_ids tensor, so both results are computed once per batch and reused.

Listed under `plugins` by the gpu groups; it patches when axolotl registers plugins, before the model's
attention wrappers are built.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

_patched = False


def patch_varlen_syncs() -> None:
    global _patched
    if _patched:
        return
    import axolotl.monkeypatch.attention.sdpa_varlen as sdpa_varlen
    import torch
    import transformers.modeling_flash_attention_utils as fa_utils

    original_prepare = fa_utils.prepare_fa_kwargs_from_position_ids
    original_is_packed = sdpa_varlen._is_packed
    # Keeping a reference to the last position_ids keeps it alive, so no later batch can reuse its id.
    last: dict = {}

    def prepare_once(position_ids):
        # under torch.compile the cache would be a traced side effect: leave batches to dynamo there
        # (default recipe + torch_compile lost its gradients to NaN at step 2 on an H200; cause unproven)
        if torch.compiler.is_compiling():
            return original_prepare(position_ids)
        if last.get("prepare_key") is position_ids:
            return last["prepare"]
        (cu_q, cu_k), (max_q, max_k) = original_prepare(position_ids)
        result = ((cu_q, cu_k), (int(max_q), int(max_k)))  # Python ints: later layers need no sync
        last["prepare_key"], last["prepare"] = position_ids, result
        return result

    def is_packed_once(position_ids):
        if torch.compiler.is_compiling():
            return original_is_packed(position_ids)
        if last.get("packed_key") is position_ids:
            return last["packed"]
        result = original_is_packed(position_ids)
        last["packed_key"], last["packed"] = position_ids, result
        return result

    fa_utils.prepare_fa_kwargs_from_position_ids = prepare_once
    sdpa_varlen._is_packed = is_packed_once
    _patched = True


class VarlenSyncPlugin(BasePlugin):
    def register(self, cfg):
        patch_varlen_syncs()
