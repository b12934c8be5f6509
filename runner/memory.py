"""A rough per-GPU memory model: enough to reject runs that cannot fit and to decide when activation
checkpointing is needed. It errs slightly high; real use also depends on kernels and fragmentation.

Per GPU: base weights at load precision + trainable state (weights, gradients, Adam moments) +
activations kept for the backward pass + logits + a fixed CUDA overhead, with DeepSpeed ZeRO dividing
the sharded parts by the GPU count. `resolve_memory_settings` picks the `auto` micro batch and activation
checkpointing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
CUDA_OVERHEAD_GIB = 1.5      # context, cuBLAS workspaces, allocator slack
FRAGMENTATION = 1.05
# Bytes of activations saved per token per layer in 16-bit without checkpointing, per unit of width
# (attention scores not materialised, as with flash/SDPA kernels). Korthikanti et al. 2022 give ~34·d
# for full training; LoRA with axolotl's kernels measured 25·d on an H100 (Llama-2-7B, bench/NOTES.md).
ACTIVATION_BYTES_PER_TOKEN_PER_WIDTH = 26
# A full fine-tune (no adapter, so no fused LoRA kernels) keeps every block's intermediates, the MLP's
# gate, up and product included: Llama-2-7B on an H200, 4 rows of 4 096 tokens, 110.2 GiB allocated in
# the first step (weights + activations, no Adam moments yet) = 48·d (bench/RESULTS.md §12).
FULL_ACTIVATION_BYTES_PER_TOKEN_PER_WIDTH = 48
# Logits in 16 and 32 bit, their gradient and the loss's softmax: ~24 bytes per token per vocab entry
# (Llama-2-7B: 47 GiB active without a fused loss vs 40 GiB with Liger's fused linear cross-entropy).
LOGIT_BYTES_PER_TOKEN_PER_VOCAB = 24


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    trainable_state: float
    activations: float
    logits: float
    overhead: float

    @property
    def total(self) -> float:
        return (self.weights + self.trainable_state + self.activations + self.logits) * FRAGMENTATION + self.overhead

    def breakdown(self) -> str:
        return (f"weights {self.weights:.1f} + optimizer/adapter {self.trainable_state:.1f} + activations "
                f"{self.activations:.1f} + logits {self.logits:.1f} GiB")


def lora_params(spec: dict[str, Any], r: int) -> float:
    """Adapter parameters for LoRA on every linear layer of the blocks."""
    d, ff, layers = spec["hidden_size"], spec["intermediate_size"], spec["num_layers"]
    kv_width = d * spec["num_kv_heads"] // spec["num_heads"]
    experts = spec.get("num_experts", 1)
    attention = (d + d) + 2 * (d + kv_width) + (d + d)
    mlp = 3 * (d + ff) * experts
    return r * layers * (attention + mlp)


def zero_stage(deepspeed: Any) -> tuple[int, bool]:
    """(ZeRO stage, offloaded) of an inline DeepSpeed config; (0, False) without DeepSpeed."""
    if not isinstance(deepspeed, dict):
        return (0, False)
    zero = deepspeed.get("zero_optimization", {}) or {}
    offload = (zero.get("offload_param") or zero.get("offload_optimizer") or {}).get("device", "none") == "cpu"
    return (int(zero.get("stage", 0)), offload)


# Characters per token of typical BPE tokenizers, on the low side so that rows are not underestimated.
CHARS_PER_TOKEN = 3


def row_tokens(config: dict[str, Any], longest_record_chars: int | None = None) -> int:
    """Tokens in one row of a micro batch: the full sequence_len when packing or padding to it,
    else the longest example (batches are padded to their longest row)."""
    sequence_len = int(config.get("sequence_len") or 512)
    if config.get("sample_packing") or config.get("pad_to_sequence_len") or not longest_record_chars:
        return sequence_len
    return min(sequence_len, longest_record_chars // CHARS_PER_TOKEN + 1)


def estimate(config: dict[str, Any], gradient_checkpointing: bool | None = None,
             longest_record_chars: int | None = None) -> MemoryEstimate:
    spec, gpu = config["model_spec"], config["gpu"]
    params = spec["params_b"] * 1e9
    on_cpu = gpu.get("modal") is None and not gpu.get("bf16")
    n = int(gpu["count"])
    stage, offload = zero_stage(config.get("deepspeed"))
    shard = n if stage else 1

    if config.get("load_in_4bit"):
        # NF4 plus quantisation constants; embeddings and the output head stay 16-bit
        embed = 2 * spec["vocab_size"] * spec["hidden_size"]
        weights = (params - embed) * 0.56 + embed * 2
    elif config.get("load_in_8bit"):
        weights = params * 1.1
    else:
        weights = params * (4 if on_cpu else 2)

    if config.get("adapter"):
        trainable = lora_params(spec, int(config.get("lora_r") or 16)) * 16  # fp32 weight, grad, Adam m, v
        if stage >= 3:
            weights /= shard
    elif stage:
        # full fine-tune under DeepSpeed's mixed precision: 16-bit grads, fp32 master weights and Adam m, v
        grads, optimizer = params * 2, params * 12
        if stage >= 1:
            optimizer = 0 if offload else optimizer / shard
        if stage >= 2:
            grads /= shard
        if stage >= 3:
            weights = 0 if offload else weights / shard
        trainable = grads + optimizer
    else:
        # full fine-tune without DeepSpeed. bf16: axolotl trains the bf16 weights themselves and torch's
        # AdamW keeps its moments in bf16 too (a 7B on an H200: 64.2 GiB measured, 120.6 from the
        # mixed-precision count; bench/RESULTS.md §11). fp16 (AMP) and the CPU: fp32 weights, grads and
        # moments. 8-bit optimizers: one byte a moment.
        bf16 = config.get("bf16") is True and not on_cpu
        width = 2 if bf16 else 4
        moments = 2 if "8bit" in str(config.get("optimizer") or "") else 2 * width
        master = 0 if bf16 or on_cpu else 2   # fp16 AMP's fp32 weights beyond the 16-bit copy counted above
        trainable = params * (width + moments + master)

    tokens = int(config.get("micro_batch_size") or 1) * row_tokens(config, longest_record_chars)
    d, layers = spec["hidden_size"], spec["num_layers"]
    checkpointing = config.get("gradient_checkpointing") if gradient_checkpointing is None else gradient_checkpointing
    per_width = (ACTIVATION_BYTES_PER_TOKEN_PER_WIDTH if config.get("adapter")
                 else FULL_ACTIVATION_BYTES_PER_TOKEN_PER_WIDTH)
    if checkpointing is True:
        # layer inputs kept, one layer's internals recomputed at a time
        activations = tokens * d * 2 * layers + tokens * d * per_width
    else:
        activations = tokens * d * per_width * layers
    fused_ce = bool(config.get("liger_fused_linear_cross_entropy") or config.get("cut_cross_entropy"))
    logits = 0 if fused_ce else tokens * spec["vocab_size"] * LOGIT_BYTES_PER_TOKEN_PER_VOCAB

    return MemoryEstimate(
        weights=weights / GIB,
        trainable_state=trainable / GIB,
        activations=activations / GIB,
        logits=logits / GIB,
        overhead=0.0 if on_cpu else CUDA_OVERHEAD_GIB,
    )


MICRO_BATCH_CHOICES = (64, 32, 16, 8, 4, 2, 1)
# Leave room for what the memory model does not see (allocator peaks, compile workspaces).
AUTO_HEADROOM = 0.9
# Past ~16k tokens per micro batch a 7B LoRA step is matmul-bound: on an H200, 8 x 4096 ran 1 % slower
# per token than 4 x 4096 (bench/RESULTS.md) while holding 122 instead of 67 GiB. The cap keeps that
# memory free for longer rows, evaluation and the allocator.
MAX_TOKENS_PER_MICRO_BATCH = 16384


def resolve_memory_settings(config: dict[str, Any], longest_record_chars: int | None = None,
                            data_cap: int | None = None) -> None:
    """Fill in `micro_batch_size: auto` and `gradient_checkpointing: auto` from the memory model.

    Recomputing activations costs ~30 % more compute, so the largest micro batch that fits without
    checkpointing wins; checkpointing is turned on only when not even a micro batch of 1 fits.
    `data_cap`: the most rows the data wants per step (runner/schedule.py: small data gets more, smaller
    steps); the memory model's choice never exceeds it.
    """
    auto_batch = config.get("micro_batch_size") == "auto"
    auto_ckpt = config.get("gradient_checkpointing") == "auto"
    if not (auto_batch or auto_ckpt):
        return
    limit = config["gpu"]["memory_gib"] * AUTO_HEADROOM
    checkpointing_options = (False, True) if auto_ckpt else (config.get("gradient_checkpointing") is True,)
    row = row_tokens(config, longest_record_chars)
    batches = tuple(b for b in MICRO_BATCH_CHOICES
                    if b == 1 or (b * row <= MAX_TOKENS_PER_MICRO_BATCH and b <= (data_cap or b))) \
        if auto_batch else (int(config["micro_batch_size"]),)
    for checkpointing in checkpointing_options:
        for batch in batches:
            trial = {**config, "micro_batch_size": batch}
            if estimate(trial, checkpointing, longest_record_chars).total <= limit:
                config["micro_batch_size"], config["gradient_checkpointing"] = batch, checkpointing
                return
    # nothing fits: the smallest settings, so that validate.check_memory reports the problem with its numbers
    config["micro_batch_size"] = batches[-1]
    config["gradient_checkpointing"] = checkpointing_options[-1]
