"""Why is the eval stage's first generate call slow? The same 200 held-out prompts through the eval
engine (runner.evals.generate.TransformersEngine, one batch) twice in one process, in a fresh process
per SDPA backend setting: the first call against the second, and the attention kernels the first ran.

    python bench/generate_warmup.py MODEL_DIR TOKENIZER_DIR [--out FILE.jsonl] [--settings default,no_cudnn]

Needs torch, transformers and peft only (no axolotl), with the repo on sys.path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = ("default", "no_cudnn")


def prompts(tokenizer) -> list[list[int]]:
    import yaml

    from runner.evals.prompts import PromptTemplate, read_jsonl

    dataset = yaml.safe_load((ROOT / "conf" / "dataset" / "sqlqa.yaml").read_text())
    template = PromptTemplate.from_type(dataset["datasets"][0]["type"])
    records = read_jsonl(ROOT / "runner" / "data" / "sqlqa-test.jsonl", None)
    return [list(tokenizer(template.prompt(r))["input_ids"]) for r in records]


def one(model_dir: str, tokenizer_dir: str, setting: str) -> dict:
    import torch

    from runner.evals.generate import GenerationSettings, ModelRef, TransformersEngine, load_model

    if setting == "no_cudnn":
        torch.backends.cuda.enable_cudnn_sdp(False)
    started = time.monotonic()
    model, tokenizer = load_model(ModelRef(path=model_dir, tokenizer=tokenizer_dir))
    line: dict = {"setting": setting, "load_s": round(time.monotonic() - started, 2)}
    ids = prompts(tokenizer)
    engine = TransformersEngine(model, tokenizer, GenerationSettings(max_new_tokens=64, stop=("[/SQL]",)))
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for call in ("first", "second"):
        sync()
        started, tokens = time.monotonic(), engine.generated_tokens
        engine.generate(ids)
        sync()
        line[f"{call}_s"] = round(time.monotonic() - started, 2)
        line[f"{call}_tokens"] = engine.generated_tokens - tokens
    from torch.profiler import ProfilerActivity, profile

    short = TransformersEngine(model, tokenizer, GenerationSettings(max_new_tokens=3, stop=("[/SQL]",)))
    with profile(activities=[ProfilerActivity.CUDA if torch.cuda.is_available() else ProfilerActivity.CPU]) as prof:
        short.generate(ids)
    kernels = sorted({e.key for e in prof.key_averages() if any(
        word in e.key.lower() for word in ("fmha", "flash", "cudnn", "attention", "efficient", "sdpa"))})
    line["attention_kernels"] = [k[:120] for k in kernels][:8]
    return line


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("tokenizer")
    parser.add_argument("--out")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.model, args.tokenizer, args.one)), flush=True)
        return 0
    for setting in args.settings.split(","):
        result = subprocess.run([sys.executable, __file__, args.model, args.tokenizer, "--one", setting],
                                capture_output=True, text=True)
        lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
        line = json.loads(lines[-1]) if lines else {"setting": setting, "error": result.stderr[-1500:]}
        print(json.dumps(line), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
