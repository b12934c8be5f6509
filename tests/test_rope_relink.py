"""rope_relink: with axolotl's LoRA attention kernels on, the attention forward uses Liger's RoPE."""

import subprocess
import sys
import textwrap

from conftest import ROOT

# In a fresh interpreter: these patches rewrite transformers' Llama attention for the whole process.
# The order is axolotl's: its own pre-load patches (the LoRA rewrite), then the plugins in list order.
CHECK = textwrap.dedent("""
    import tempfile
    from axolotl.integrations.liger.plugin import LigerPlugin
    from axolotl.monkeypatch.lora_kernels import patch_self_attn_lora
    from axolotl.utils.dict import DictDefault
    from liger_kernel.transformers.rope import liger_rotary_pos_emb
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention
    from runner.integrations.rope_relink import RopeRelinkPlugin

    base = tempfile.mkdtemp()
    LlamaConfig(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4).save_pretrained(base)
    cfg = DictDefault(model_config_type="llama", base_model=base, liger_rope=True, liger_rms_norm=True,
                      lora_qkv_kernel=True, lora_o_kernel=True)
    patch_self_attn_lora(cfg)
    LigerPlugin().pre_model_load(cfg)
    rope = lambda: LlamaAttention.forward.__globals__["apply_rotary_pos_emb"]
    print("rewritten:", LlamaAttention.forward.__name__)
    print("liger rope before relink:", rope() is liger_rotary_pos_emb)
    RopeRelinkPlugin().pre_model_load(cfg)
    print("liger rope after relink:", rope() is liger_rotary_pos_emb)
""")


def test_lora_kernel_attention_runs_liger_rope():
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "rewritten: axolotl_attn_forward" in lines
    # if this fails, axolotl no longer binds the eager RoPE and the plugin may have become unnecessary
    assert "liger rope before relink: False" in lines
    assert "liger rope after relink: True" in lines
