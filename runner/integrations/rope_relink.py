"""axolotl plugin: `liger_rope: true` really runs Liger's fused RoPE when the LoRA attention kernels are on.

axolotl 0.19 rewrites the attention class's forward for its LoRA QKV/O kernels (`lora_qkv_kernel`,
`lora_o_kernel`) before any plugin runs, and executes the rewritten source with the model module's
`apply_rotary_pos_emb` imported as it is at that moment: the eager one. LigerPlugin then replaces the
module's function, which the rewritten forward never looks up again, so Liger's RoPE was silently off
and every layer ran eager RoPE (mul, neg, cat and add kernels over q and k, forward and backward:
about a tenth of the GPU time of a 7B step, bench/RESULTS.md). Listed after LigerPlugin, this plugin
points the rewritten forward at the module's current function.
"""

from __future__ import annotations

import logging
import sys

from axolotl.integrations.base import BasePlugin

ROPE = "apply_rotary_pos_emb"
LOG = logging.getLogger(__name__)


def relink_rope(attention_cls: type) -> bool:
    """Make `attention_cls.forward` call its module's current RoPE function; True if it changed."""
    if not hasattr(attention_cls, "_original_forward"):  # axolotl did not rewrite this forward
        return False
    current = getattr(sys.modules[attention_cls.__module__], ROPE, None)
    forward_globals = attention_cls.forward.__globals__
    if current is None or forward_globals.get(ROPE) in (None, current):
        return False
    forward_globals[ROPE] = current
    return True


class RopeRelinkPlugin(BasePlugin):
    def pre_model_load(self, cfg):
        # plugins' pre_model_load runs after axolotl's own patches and in list order, so after LigerPlugin's
        if not cfg.liger_rope or not (cfg.lora_qkv_kernel or cfg.lora_o_kernel):
            return
        from axolotl.monkeypatch.lora_kernels import get_attention_cls_from_config

        attention_cls = get_attention_cls_from_config(cfg)
        if relink_rope(attention_cls):
            LOG.info("rope_relink: %s.forward now calls %s", attention_cls.__name__,
                     attention_cls.forward.__globals__[ROPE].__name__)
