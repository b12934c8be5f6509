"""A probe, not a trainer the product uses: how fast do LoRA settings teach a real pretrained model?

Many settings in one process, on one GPU (each from a fresh load of the model): a bare PyTorch loop (peft's LoRA on
every linear layer of the blocks, fused AdamW, linear warm-up then cosine or linear decay to 0, gradient
clipping at 1, bf16 autocast, padded batches of whole examples in a seeded shuffle) over the token ids
axolotl trains on (runner.evals.prompts.tokenize_example, the sqlqa group's template). Every half epoch
the held-out loss (runner.evals.loss, the eval stage's own function); at the end the held-out answers,
greedy, scored by runner.evals.sql. It explores which batch, learning rate, rank and epochs learn most per
step; the product's recipe is then measured through axolotl by bench/quality_bench.py.

    python bench/recipe_probe.py --model DIR --data DIR --out results.jsonl \
        "b8_lr2e-4_ep3:bs=8,lr=2e-4,ep=3" "b16_lr1e-3:bs=16,lr=1e-3,ep=3,r=16,alpha=32,decay=cosine" ...

One JSON line per setting: the settings, steps, the loss curve (step, epoch, seconds, held-out loss) and
the final exact match and execution accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from runner.evals.prompts import PromptTemplate, read_jsonl, tokenize_example  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULTS = {"bs": 8, "lr": 2e-4, "ep": 3, "r": 16, "alpha": 32, "warmup": 0.05, "decay": "cosine", "seed": 42,
            "evals": 2}


def sqlqa_template(model: Path | None = None, prompt: str | None = None) -> PromptTemplate:
    """The sqlqa group's prompt, as the runner plans it for `model` (runner/chat_prompt.py: through the model's
    own chat template where `dataset.prompt`, default the group's, says so)."""
    from runner import chat_prompt

    group = yaml.safe_load((ROOT / "conf" / "dataset" / "sqlqa.yaml").read_text())
    if model is not None:
        config = {**group, "base_model": str(model)}
        config["dataset"] = {**group["dataset"], "prompt": prompt or group["dataset"].get("prompt")}
        chat_prompt.apply(config)
        group = config
    return PromptTemplate.from_type(group["datasets"][0]["type"])


def parse_setting(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    setting = dict(DEFAULTS)
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"error: unknown setting {key!r} in {text!r}")
        setting[key] = type(DEFAULTS[key])(value) if not isinstance(DEFAULTS[key], float) else float(value)
    return name, setting


def batches(examples: list, size: int, rng: random.Random) -> list[list]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    return [[examples[i] for i in order[s : s + size]] for s in range(0, len(order), size)]


def collate(batch: list, pad_id: int, device: str):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
    return ids, mask, labels


def schedule(total: int, warmup: float, decay: str):
    warm = max(1, math.ceil(total * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else max(0.0, 1 - progress)

    return factor


def probe(model, tokenizer, train: list, test: list, records: list, setting: dict, max_new_tokens: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    device = model.device.type

    from runner.evals.generate import GenerationSettings, TransformersEngine
    from runner.evals.loss import mean_token_loss
    from runner.evals.sql import score_records

    torch.manual_seed(setting["seed"])
    tuned = get_peft_model(model, LoraConfig(r=setting["r"], lora_alpha=setting["alpha"], lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=setting["lr"], weight_decay=0.0, fused=device == "cuda")
    per_epoch = math.ceil(len(train) / setting["bs"])
    total = per_epoch * setting["ep"]
    lr_at = schedule(total, setting["warmup"], setting["decay"])
    eval_every = max(1, per_epoch // setting["evals"])
    rng = random.Random(setting["seed"])
    curve, step, seconds = [], 0, 0.0
    pad = tokenizer.pad_token_id
    for epoch in range(setting["ep"]):
        tuned.train()
        started = time.monotonic()
        for batch in batches(train, setting["bs"], rng):
            for group in optimizer.param_groups:
                group["lr"] = setting["lr"] * lr_at(step)
            ids, mask, labels = collate(batch, pad, device)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = tuned(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % eval_every == 0 or step == total:
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds += time.monotonic() - started
                tuned.eval()
                with torch.autocast(device, dtype=torch.bfloat16):
                    held = mean_token_loss(tuned, test, pad)["eval_loss"]
                curve.append({"step": step, "epoch": round(step / per_epoch, 3), "train_s": round(seconds, 2),
                              "eval_loss": held, "train_loss": round(float(loss), 4)})
                print(json.dumps(curve[-1]), flush=True)
                tuned.train()
                started = time.monotonic()
    tuned.eval()
    engine = TransformersEngine(tuned, tokenizer, GenerationSettings(max_new_tokens=max_new_tokens, stop=("[/SQL]",)))
    prompts = [ids[: next(i for i, lab in enumerate(labels) if lab != -100)] for ids, labels in test]
    answers = engine.generate(prompts)
    engine.model = None   # close() would release the model we still need
    scores = score_records([{**r, "prediction": a} for r, a in zip(records, answers)], 2.0)
    return {"steps": total, "steps_per_epoch": per_epoch, "curve": curve,
            "execution_accuracy": scores["execution_accuracy"], "exact_match": scores["exact_match"],
            "sample": answers[:3]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.jsonl and test.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=1e9, help="seconds: start no setting after this")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("settings", nargs="+")
    args = parser.parse_args()
    began = time.monotonic()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def load():
        return AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, device_map=device)

    template = sqlqa_template(args.model)
    train = [tokenize_example(tokenizer, template, r, 4096) for r in read_jsonl(args.data / "train.jsonl")]
    records = read_jsonl(args.data / "test.jsonl")
    test = [tokenize_example(tokenizer, template, r, 4096) for r in records]
    settings = [parse_setting(s) for s in args.settings]
    with args.out.open("a") as out:
        if "base" in [name for name, _ in settings]:
            settings = [s for s in settings if s[0] != "base"]
            from runner.evals.loss import mean_token_loss

            base = mean_token_loss(load(), test, tokenizer.pad_token_id)["eval_loss"]
            out.write(json.dumps({"name": "base", "eval_loss": base}) + "\n")
            print("base", base, flush=True)
        for name, setting in settings:
            if time.monotonic() - began > args.deadline:
                print(f"deadline: {name} not started", flush=True)
                break
            started = time.monotonic()
            result = probe(load(), tokenizer, train, test, records, setting, args.max_new_tokens)
            line = {"name": name, **setting, **result, "wall_s": round(time.monotonic() - started, 1),
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
            out.write(json.dumps(line) + "\n")
            out.flush()
            print(name, "final", result["curve"][-1], "exec", result["execution_accuracy"], "wall", line["wall_s"],
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
