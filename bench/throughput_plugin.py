"""axolotl plugin that measures training throughput and appends one JSON line per run.

Enable with `plugins: [bench.throughput_plugin.ThroughputPlugin]` (repo root on PYTHONPATH).
Environment:
  BENCH_OUT         JSON-lines file to append to (default ./throughput.jsonl)
  BENCH_RECIPE      recipe name recorded in the line (default: output_dir's basename)
  BENCH_WARMUP      optimizer steps left out of the numbers (compile, allocator warm-up; default 6)
  BENCH_PEAK_TFLOPS dense bf16 rate used for MFU (default 790, measured on an H200 here)
  BENCH_PROFILE     profile this many last steps with torch.profiler (left out of the numbers) and
                    write the top kernels plus GPU-busy time next to BENCH_OUT (default 0)

Per optimizer step it counts the non-pad tokens (attention_mask != 0) and the trainable tokens
(labels != -100) of every micro-batch, and takes the wall time between step ends after
torch.cuda.synchronize(). MFU follows the project's formula:
  tokens/s * (4*N + 12*L*s*d) / peak   (6*N for a full fine-tune),
N = base-model parameters, counted logically (a 4-bit QLoRA weight stores two values a byte and a
ZeRO-3 rank holds a shard: both count the whole matrix), 4N for adapters (forward 2N + input-gradient
2N, no weight gradient for the frozen base), 6N for a full fine-tune, L layers, d width, s = the padded row length (sequence_len when packing), so the
attention term counts full causal rows even where varlen attention skips cross-document blocks.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from axolotl.integrations.base import BasePlugin


def logical_numel(param: torch.Tensor) -> int:
    """The values a parameter stands for: bitsandbytes' Params4bit packs two 4-bit values into each
    stored byte (its quant_state keeps the real shape); a DeepSpeed ZeRO-3 parameter is a local shard
    (ds_numel is the whole)."""
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    if shape is not None:
        return int(torch.Size(shape).numel())
    whole = getattr(param, "ds_numel", None)
    return int(whole) if whole is not None else param.numel()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _ThroughputMeter(TrainerCallback):
    def __init__(self, cfg, trainer):
        self.cfg = cfg
        self.trainer = trainer
        self.warmup = int(os.environ.get("BENCH_WARMUP", "6"))
        self.peak = float(os.environ.get("BENCH_PEAK_TFLOPS", "790")) * 1e12
        # per optimizer step: [total tokens, trainable tokens, padded row length]
        self.steps: list[list[int]] = []
        self.pending = [0, 0, 0, 0]
        self.step_ends: list[float] = []
        self.losses: list[float] = []
        self.saved_at: list[int] = []  # steps after which the trainer wrote a checkpoint
        self.peak_alloc = self.peak_active = 0  # axolotl's memory logging resets the peaks each step
        self.written = False
        self.profile_steps = int(os.environ.get("BENCH_PROFILE", "0"))
        self.profiler = None

    # called from the wrapped training_step, once per micro-batch
    def count(self, inputs: dict) -> None:
        labels = inputs.get("labels")
        mask = inputs.get("attention_mask")
        ids = inputs["input_ids"]
        if mask is not None and mask.shape == ids.shape:
            total = int((mask != 0).sum())
        else:
            pad = self.trainer.processing_class.pad_token_id
            total = int((ids != pad).sum()) if pad is not None else ids.numel()
        trainable = int((labels != -100).sum()) if labels is not None else total
        # examples: packed rows hold several, each starting at position 0
        positions = inputs.get("position_ids")
        examples = int((positions == 0).sum()) if positions is not None else ids.shape[0]
        self.pending[0] += total
        self.pending[1] += trainable
        self.pending[2] = max(self.pending[2], ids.shape[-1])
        self.pending[3] += examples

    def on_train_begin(self, args, state, control, **kwargs):
        _sync()
        self.step_ends.append(time.perf_counter())

    def on_step_begin(self, args, state, control, **kwargs):
        if self.profile_steps and state.global_step == state.max_steps - self.profile_steps:
            from torch.profiler import ProfilerActivity, profile

            self.profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.profiler.__enter__()
            self.profile_t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.step_ends.append(time.perf_counter())
        if self.profiler is not None and state.global_step == state.max_steps:
            self.profiler.__exit__(None, None, None)
            self.write_profile(time.perf_counter() - self.profile_t0)
        if torch.cuda.is_available():  # before on_log, where axolotl resets the peak counters
            self.peak_alloc = max(self.peak_alloc, torch.cuda.max_memory_allocated())
            self.peak_active = max(self.peak_active,
                                   torch.cuda.memory_stats().get("active_bytes.all.peak", 0))
        self.steps.append(self.pending)
        self.pending = [0, 0, 0, 0]

    def on_save(self, args, state, control, **kwargs):
        self.saved_at.append(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):
        self.write()

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        cfg = self.cfg
        cuda = torch.cuda.is_available()
        model = self.trainer.model
        n_base = sum(logical_numel(p) for n, p in model.named_parameters() if "lora_" not in n)
        n_train = sum(logical_numel(p) for p in model.parameters() if p.requires_grad)
        linear = 4 if cfg.adapter else 6   # a full fine-tune also computes the weights' gradients
        mcfg = getattr(model, "config", None) or model.get_base_model().config
        layers, width = mcfg.num_hidden_layers, mcfg.hidden_size
        steps, ends = self.steps, self.step_ends
        if self.profiler is not None:  # profiled steps run slower: leave them out
            steps, ends = steps[:-self.profile_steps], ends[:-self.profile_steps]
        w = min(self.warmup, max(len(steps) - 2, 0))
        measured = steps[w:]
        secs = ends[-1] - ends[w] if measured else float("nan")
        durations = [b - a for a, b in zip(ends[w:-1], ends[w + 1:])]
        # data-parallel ranks see equal shares of each step: scale rank 0's counts to the whole job
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if int(os.environ.get("RANK", "0")) != 0:
            return
        total = sum(s[0] for s in measured) * world
        trainable = sum(s[1] for s in measured) * world
        examples = sum(s[3] for s in measured) * world
        flops = world * sum(s[0] * (linear * n_base + 12 * layers * s[2] * width) for s in measured)
        record = {
            "recipe": os.environ.get("BENCH_RECIPE") or Path(cfg.output_dir).name,
            "gpu": torch.cuda.get_device_name() if cuda else "cpu",
            "torch": torch.__version__,
            "steps_measured": len(measured),
            "warmup_steps": w,
            "seconds": round(secs, 3),
            "median_step_s": round(statistics.median(durations), 4) if durations else None,
            "trainable_tok_s": round(trainable / secs, 1),
            "total_tok_s": round(total / secs, 1),
            "examples_per_s": round(examples / secs, 2),
            "world_size": world,
            "mfu": round(flops / secs / self.peak / world, 4),  # per GPU
            "tokens_per_step": round(total / max(len(measured), 1), 1),
            "trainable_fraction": round(trainable / max(total, 1), 4),
            "row_len": max((s[2] for s in measured), default=0),
            "peak_alloc_gib": round(self.peak_alloc / 2**30, 2),
            "peak_active_gib": round(self.peak_active / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            "base_params": n_base,
            "trainable_params": n_train,
            # a checkpoint written inside the window is timed as training: such a line is not a clean figure
            "checkpoint_saves_measured": sum(1 for step in self.saved_at if w <= step < len(steps)),
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "step_s": [round(d, 4) for d in durations],
            "cfg": {k: cfg.get(k) for k in (
                "sequence_len", "sample_packing", "micro_batch_size", "gradient_checkpointing",
                "attn_implementation", "sdpa_varlen", "torch_compile", "torch_compile_mode",
                "liger_rope", "liger_rms_norm", "liger_glu_activation",
                "liger_fused_linear_cross_entropy", "lora_mlp_kernel", "lora_qkv_kernel",
                "lora_o_kernel", "fp8", "optimizer", "plugins", "deepspeed")},
        }
        out = Path(os.environ.get("BENCH_OUT", "throughput.jsonl"))
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:  # one short line per run: append is atomic enough here
            fh.write(json.dumps(record) + "\n")
        print("BENCH " + json.dumps({k: v for k, v in record.items() if k not in ("step_s", "cfg")}),
              flush=True)


    def write_profile(self, wall: float) -> None:
        if int(os.environ.get("RANK", "0")) != 0:
            return
        events = self.profiler.key_averages()
        device_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
        recipe = os.environ.get("BENCH_RECIPE") or Path(self.cfg.output_dir).name
        out = Path(os.environ.get("BENCH_OUT", "throughput.jsonl")).parent / f"profile-{recipe}.txt"
        head = (f"{recipe}: {self.profile_steps} steps, wall {wall:.3f} s, kernel time "
                f"{device_us / 1e6:.3f} s ({device_us / 1e6 / wall:.0%} busy)\n")
        table = events.table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=70)
        cpu = events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=70)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(head + table + "\n\nby CPU time\n" + cpu)
        print("PROFILE " + head, flush=True)


class ThroughputPlugin(BasePlugin):
    """Counts tokens per optimizer step and times steps; see the module docstring."""

    def post_trainer_create(self, cfg, trainer):
        meter = _ThroughputMeter(cfg, trainer)
        trainer.add_callback(meter)
        step = trainer.training_step

        def counted_training_step(model, inputs, *args, **kwargs):
            meter.count(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted_training_step
