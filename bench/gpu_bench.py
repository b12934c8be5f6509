"""GPU training benchmark through the project's own train stage: composed config → axolotl.

Compares, in one run on one machine, the seed's recipe with the project's default recipe for a `gpu`
option (and variants: without varlen_sync or rope_relink, micro batch 8, torch_compile, gradient accumulation 2, and
2 GPUs through DDP, ZeRO-1 or ZeRO-2 for scaling and loss parity), LoRA r16 on a random-init Llama-2-7B
(throughput does not depend on weight values) on text-to-SQL data. Each recipe is planned, validated
and written to a run folder exactly as `python -m runner` would, then the runner's preprocess and
train stages run it; bench/throughput_plugin.py measures every optimizer step.

On the GPU machine, from the repo root (see bench/RESULTS.md for the full procedure):
    python3 bench/gpu_bench.py --model /tmp/bench/llama7b-random --data /tmp/bench/sqlqa.jsonl \
        --out $OUT/throughput.jsonl --deadline 380 seed default ddp2 default_ga2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.compose import compose_job, expand_overrides  # noqa: E402
from runner.pipeline import StageFailed, run_stage  # noqa: E402
from runner.plan import plan_job  # noqa: E402
from runner.runfolder import RunFolder, new_run_id  # noqa: E402

METER = "bench.throughput_plugin.ThroughputPlugin"
VARLEN_SYNC = "runner.integrations.varlen_sync.VarlenSyncPlugin"
ROPE_RELINK = "runner.integrations.rope_relink.RopeRelinkPlugin"
# The seed's recipe (Modal's axolotl example): no packing, micro batch 32, activation checkpointing,
# plain SDPA, no Liger. axolotl 0.19 turns its LoRA kernels on by itself, so they stay on here too.
SEED = ["recipe=seed", f"plugins=[{METER}]"]   # conf/recipe/seed.yaml


def recipes(gpu: str) -> dict[str, list[str]]:
    # the meter joins the plugins the gpu option composes, so "default" is what users get
    group_plugins = compose_job(expand_overrides([f"gpu={gpu}"], multirun=False)[0]).resolve()["plugins"]

    def plugins(*left_out: str) -> str:
        return f"plugins=[{','.join([p for p in group_plugins if p not in left_out] + [METER])}]"

    default_plugins = plugins()
    multi = {"h100": "h100x2", "h200": "h200x8"}.get(gpu, "h100x2")
    two_gpus = [f"gpu={multi}", "gpu.count=2", f"gpu.modal={multi.split('x')[0].upper()}:2", default_plugins]
    return {
        "seed": [f"gpu={gpu}", *SEED],
        "default": [f"gpu={gpu}", default_plugins],
        "default_no_varlen_sync": [f"gpu={gpu}", plugins(VARLEN_SYNC)],
        # the default before rope_relink: eager RoPE instead of Liger's under the LoRA kernels
        "default_no_rope_relink": [f"gpu={gpu}", plugins(ROPE_RELINK)],
        "default_compile": [f"gpu={gpu}", default_plugins, "torch_compile=true"],
        "default_mb8": [f"gpu={gpu}", default_plugins, "micro_batch_size=8"],
        # what the `auto` schedule gives the 3 000 shipped records in one epoch (runner/schedule.py): ~100
        # optimizer steps of one 2 048-token row instead of 16 k-token steps
        "default_rows2048": [f"gpu={gpu}", default_plugins, "sequence_len=2048", "micro_batch_size=1"],
        # gradient accumulation 2 on one GPU = the same samples per optimizer step as 2 GPUs × 1: loss parity
        "default_ga2": [f"gpu={gpu}", default_plugins, "gradient_accumulation_steps=2"],
        # QLoRA: 4-bit base weights (MFU counts the logical parameters, not the packed bytes)
        "qlora": [f"gpu={gpu}", default_plugins, "adapter=qlora"],
        "seed_qlora": [f"gpu={gpu}", *SEED, "adapter=qlora"],
        # full fine-tune: every weight trains (6N FLOPs a token in the MFU), on one GPU as the gpu option
        # plans it, or sharded over two
        "full": [f"gpu={gpu}", default_plugins, "adapter=none"],
        # a micro batch the memory model finds too big without checkpointing: it turns checkpointing on
        "full_mb4": [f"gpu={gpu}", default_plugins, "adapter=none", "micro_batch_size=4"],
        "full_zero3": [*two_gpus, "adapter=none", "deepspeed=zero3"],
        "ddp2": [*two_gpus, "deepspeed=none"],
        "zero1": [*two_gpus, "deepspeed=zero1"],
        "zero2": [*two_gpus, "deepspeed=zero2"],
    }


def detect_gpu() -> str:
    """The `gpu` option for the card this machine has (h100 or h200), from nvidia-smi."""
    name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                          capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return "h200" if "H200" in name else "h100"


def run_recipe(name: str, overrides: list[str], common: list[str], runs_root: Path, out: Path,
               stages: tuple[str, ...], profile: bool) -> bool:
    job = plan_job(expand_overrides([*common, *overrides, f"runs_root={runs_root}"], multirun=False)[0])
    job = job.for_run(new_run_id(job.choices, name))
    folder = RunFolder.create(job)
    os.environ.update(BENCH_OUT=str(out), BENCH_RECIPE=name, BENCH_PROFILE="2" if profile else "0",
                      BENCH_WARMUP="10" if job.config.get("torch_compile") else "6",
                      # one process must not see the second GPU (the HF Trainer would wrap it in DataParallel)
                      CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(job.compute.processes)))
    print(f"=== {name}: micro_batch_size={job.config['micro_batch_size']} gradient_checkpointing="
          f"{job.config['gradient_checkpointing']} processes={job.compute.processes}", flush=True)
    started = time.monotonic()
    try:
        for stage in stages:
            run_stage(folder, stage)
    except StageFailed as e:
        print(f"{name} FAILED in {e.stage} (exit {e.returncode}):\n" + "\n".join(e.tail[-15:]), flush=True)
        return False
    print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", default="auto", help="h100, h200, or auto (from nvidia-smi)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs-root", default="/tmp/bench/runs")
    parser.add_argument("--deadline", type=float, default=float("inf"),
                        help="seconds after start past which no further recipe starts")
    parser.add_argument("--profile", default="", help="comma-separated recipes to profile (2 last steps)")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    common = ["model=llama2", f"base_model={args.model}", "special_tokens.pad_token='<unk>'",
              f"dataset.path={args.data}", "dataset.test_path=null", "test_datasets=null", "val_set_size=0",
              f"max_steps={args.steps}", "num_epochs=50", "warmup_ratio=0", "save_strategy=no",
              "stages.prepare=false", "stages.merge=false", "stages.eval=false", "seed=0"]
    gpu = detect_gpu() if args.gpu == "auto" else args.gpu
    table = recipes(gpu)
    started, results = time.monotonic(), {}
    for i, name in enumerate(args.names):
        if time.monotonic() - started > args.deadline:
            print(f"SKIP {name}: past the deadline", flush=True)
            continue
        # the first recipe runs the preprocess stage; later ones reuse its prepared data, or the train
        # stage prepares what differs (axolotl's train prepares data that is not prepared yet)
        stages = ("preprocess", "train") if i == 0 else ("train",)
        results[name] = run_recipe(name, table[name], common, Path(args.runs_root), Path(args.out), stages,
                                   profile=name in args.profile.split(","))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
