"""Turn the throughput plugin's JSON lines into bench/results.json (one object per recipe).

    python3 bench/report.py bench/results/gpu-bench-h200x2-2026-11-27.jsonl --date 2026-11-27 \
        --versions "torch 2.11.0+cu130, transformers 5.17.0, axolotl 0.19.0"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = {"trainable_tok_s": "trainable_tokens_per_s", "total_tok_s": "tokens_per_s",
        "examples_per_s": "examples_per_s", "mfu": "mfu", "peak_active_gib": "peak_gib"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jsonl")
    parser.add_argument("--date", required=True)
    parser.add_argument("--versions", required=True)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.jsonl).read_text().splitlines() if line.strip()]
    recipes = {}
    for row in rows:
        entry = {new: row[old] for old, new in KEYS.items()}
        entry.update(gpus=row["world_size"], micro_batch_size=row["cfg"]["micro_batch_size"],
                     gradient_checkpointing=row["cfg"]["gradient_checkpointing"],
                     sample_packing=row["cfg"]["sample_packing"], steps_measured=row["steps_measured"],
                     median_step_s=row["median_step_s"], first_loss=row["first_loss"], last_loss=row["last_loss"])
        recipes[row["recipe"]] = entry
    seed = recipes.get("seed", {}).get("trainable_tokens_per_s")
    if seed:
        for entry in recipes.values():
            entry["speedup_vs_seed"] = round(entry["trainable_tokens_per_s"] / seed, 2)
    result = {"card": rows[0]["gpu"], "date": args.date, "versions": args.versions,
              "model": "Llama-2-7B architecture, random init; LoRA r16 on all linear layers",
              "data": "sqlqa.jsonl (3 000 text-to-SQL records)", "mfu_peak_tflops": 790, "recipes": recipes}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
