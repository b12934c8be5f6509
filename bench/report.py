"""Turn the throughput plugin's JSON lines into bench/results.json (one object per recipe).

    python3 bench/report.py throughput.jsonl --hand results.jsonl --date 2026-11-27 \
        --versions "torch 2.11.0+cu130, transformers 5.17.0, axolotl 0.19.0"

The positional files hold lines from bench/gpu_bench.py (the project's own stages); `--hand` files hold
lines from hand-written axolotl configs (bench/explore.sh), reported as `hand:NAME`. Lines written
before the meter counted checkpoint saves can be marked with `--saves-per-step N` (the run logs show it).
`--rename FILE:OLD=NEW` files a recipe of one run under a new name, for a run made before the recipe
changed (e.g. the default measured before rope_relink joined it). Each recipe names the file (`run`) it
came from: compare timings within one run, i.e. one machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = {"trainable_tok_s": "trainable_tokens_per_s", "total_tok_s": "tokens_per_s",
        "examples_per_s": "examples_per_s", "mfu": "mfu", "peak_active_gib": "peak_gib"}
STAGE, HAND = "project stages (bench/gpu_bench.py)", "hand-written axolotl config (bench/explore.sh)"


def read_lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def entry(row: dict, source: str, run: str, saves_per_step: int | None) -> dict:
    result = {new: row[old] for old, new in KEYS.items()}
    saves = row.get("checkpoint_saves_measured")
    if saves is None and saves_per_step is not None:
        saves = saves_per_step * row["steps_measured"]
    result.update(source=source, run=run, gpus=row["world_size"], micro_batch_size=row["cfg"]["micro_batch_size"],
                  gradient_checkpointing=row["cfg"]["gradient_checkpointing"],
                  sample_packing=row["cfg"]["sample_packing"], steps_measured=row["steps_measured"],
                  median_step_s=row["median_step_s"], checkpoint_saves_measured=saves,
                  first_loss=row["first_loss"], last_loss=row["last_loss"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jsonl", nargs="+", help="lines from bench/gpu_bench.py")
    parser.add_argument("--hand", nargs="*", default=[], help="lines from bench/explore.sh")
    parser.add_argument("--saves-per-step", type=int, default=None,
                        help="checkpoint saves per measured step, for stage lines without the count")
    parser.add_argument("--rename", action="append", default=[], metavar="FILE:OLD=NEW",
                        help="file recipe OLD of FILE's lines as NEW")
    parser.add_argument("--date", required=True)
    parser.add_argument("--versions", required=True)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    renames = {}
    for spec in args.rename:
        path, _, names = spec.rpartition(":")
        old, _, new = names.partition("=")
        renames[(Path(path).name, old)] = new
    recipes, cards = {}, set()
    for path in args.jsonl:
        for row in read_lines(path):
            name = renames.get((Path(path).name, row["recipe"]), row["recipe"])
            recipes[name] = entry(row, STAGE, Path(path).stem, args.saves_per_step)
            cards.add(row["gpu"])
    for path in args.hand:
        for row in read_lines(path):
            recipes[f"hand:{row['recipe']}"] = entry(row, HAND, Path(path).stem, None)
            cards.add(row["gpu"])
    seeds = {row["source"]: row["trainable_tokens_per_s"]
             for name, row in recipes.items() if name in ("seed", "hand:seed")}
    for row in recipes.values():  # speed-up against the seed measured the same way
        if row["source"] in seeds:
            row["speedup_vs_seed"] = round(row["trainable_tokens_per_s"] / seeds[row["source"]], 2)
    result = {"card": " / ".join(sorted(cards)), "date": args.date, "versions": args.versions,
              "model": "Llama-2-7B architecture, random init; LoRA r16 on all linear layers",
              "data": "sqlqa.jsonl (3 000 text-to-SQL records)", "mfu_peak_tflops": 790, "recipes": recipes}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
