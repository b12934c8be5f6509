"""Save a random-init Llama-2-7B-shaped model (bf16) plus a tokenizer, for throughput benchmarks.

Throughput does not depend on weight values, and the GPU machine cannot reach the Hub.
    python bench/make_random_llama.py OUT_DIR TOKENIZER_DIR
"""

import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                 bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def main() -> None:
    out, tok_dir = Path(sys.argv[1]), Path(sys.argv[2])
    t0 = time.time()
    config = LlamaConfig(**LLAMA2_7B, torch_dtype="bfloat16")
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)  # initialised in bf16 directly on the GPU: seconds
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, max_shard_size="5GB")
    for f in tok_dir.iterdir():
        shutil.copy(f, out / f.name)
    print(f"random llama: {n / 1e9:.3f} B params -> {out} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
