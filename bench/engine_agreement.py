"""Do the eval engines agree? The same run's model, the same held-out prompt ids, greedy, through each
engine in turn: generation tokens/s, the scores, and how many answers are identical between engines.

    python bench/engine_agreement.py RUN_DIR [--engines transformers,vllm] [--model tuned|base] \
        [--limit N] [--out FILE.jsonl]

One JSON line per call (appended to --out, and printed): for each engine its start (load or engine
start), generate seconds, generated tokens and tokens/s, exact match and execution accuracy; then, for
every engine after the first, the fraction of answers identical to the first engine's and the first few
that differ. bf16 kernels differ between engines, so greedy decoding may part ways after a near-tie;
agreement below 1 is expected, and the scores show whether it matters (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.errors import UserError, report  # noqa: E402
from runner.evals import generate, models  # noqa: E402
from runner.evals.settings import EvalSettings  # noqa: E402
from runner.runfolder import RunFolder  # noqa: E402
from runner.evals.heldout import HeldOut  # noqa: E402


def agreement(run_dir: Path, engines: list[str], variant: str = "tuned", limit: int | None = None) -> dict:
    from runner.evals.sql import score_records

    folder = RunFolder(run_dir)
    config = folder.composed()
    settings = EvalSettings.from_config(config)
    split = HeldOut.of(run_dir, config, limit if limit is not None else settings.limit)
    if not split.generates:
        raise UserError(f"run {folder.run_id}: no generated answers to compare (sqlqa data with a test file)")
    ref = models.tuned_model(run_dir, config) if variant == "tuned" else models.base_model(config)
    gen = settings.generation("sqlqa")
    prompt_ids = split.prompt_ids(generate.load_tokenizer(ref))
    record: dict = {"run": folder.run_id, "model": ref.describe(), "n": len(prompt_ids),
                    "max_new_tokens": gen.max_new_tokens, "engines": {}}
    answers: dict[str, list[str]] = {}
    labels = [name if engines.count(name) == 1 else f"{name}#{i + 1}" for i, name in enumerate(engines)]
    for name, label in zip(engines, labels):
        started = time.monotonic()
        engine = generate.open_engine(generate.choose_engine(name), ref, gen)
        opened = time.monotonic()
        try:
            answers[label] = engine.generate(prompt_ids)
        finally:
            engine.close()
        seconds = time.monotonic() - opened
        scores = score_records([{**r, "prediction": p} for r, p in zip(split.records, answers[label])],
                               settings.sql_time_limit_s)
        record["engines"][label] = {
            "start_s": round(opened - started, 1), "generate_s": round(seconds, 2),
            "generated_tokens": engine.generated_tokens,
            "generate_tok_s": round(engine.generated_tokens / seconds, 1) if seconds > 0 else None,
            "exact_match": scores["exact_match"], "execution_accuracy": scores["execution_accuracy"]}
    first = labels[0]
    for name in labels[1:]:
        same = [a == b for a, b in zip(answers[first], answers[name])]
        record["engines"][name]["identical_to_" + first] = round(sum(same) / max(len(same), 1), 4)
        record["engines"][name]["first_differences"] = [
            {"record": i, first: answers[first][i], name: answers[name][i]} for i, s in enumerate(same) if not s][:3]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--model", choices=("tuned", "base"), default="tuned")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        if len(engines) < 2:
            raise UserError("--engines needs two engines or more, e.g. transformers,vllm")
        record = agreement(args.run_dir, engines, args.model, args.limit)
    except UserError as e:
        return report(e)
    line = json.dumps(record)
    if args.out:
        with args.out.open("a") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
