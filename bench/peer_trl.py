"""The peer: TRL's SFTTrainer fine-tuning the same model on the same token ids, scored by the runner's own
held-out loss (runner.evals.loss) and SQL scorer (runner.evals.sql) — the trainer most users would pick
instead of the runner. bench/quality_bench.py runs it beside the runner's jobs.

    python bench/peer_trl.py --model DIR --data DIR --setting all_linear --out results.jsonl

Token ids: each record tokenised by runner.evals.prompts.tokenize_example, which gives exactly axolotl's
ids and labels for the sqlqa template (checked against axolotl's prepared data); TRL takes a pre-tokenised
dataset with `labels` as they are. After every epoch the held-out loss is measured and timed from this
process's start; at the end the 300 held-out answers are generated greedily (runner.evals.generate) and
scored. One JSON line per run.

Settings (TRL 1.9, bf16, no packing, batch 8, 3 epochs):
- quickstart: TRL's PEFT quick start: LoRA r 32, alpha 16, dropout 0.05 on peft's default targets for
  Llama (q_proj, v_proj), learning rate 2e-4, gradient checkpointing.
- all_linear: LoRA r 16, alpha 32, no dropout, on every linear layer of the blocks, learning rate 2e-4,
  linear decay, no checkpointing (the best peer measured).
"""

from __future__ import annotations

import time

STARTED = time.time()   # before the imports: they are part of the peer's time to result

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SETTINGS = {
    "quickstart": {"lora": {"r": 32, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None},
                   "args": {"gradient_checkpointing": True}},
    "all_linear": {"lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"},
                   "args": {"gradient_checkpointing": False}},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.jsonl and test.jsonl")
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer-trl"))
    parser.add_argument("--predictions", type=Path, help="write the scored answers here (JSONL, as the eval stage does)")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from recipe_probe import sqlqa_template
    from runner.evals.generate import GenerationSettings, TransformersEngine
    from runner.evals.loss import mean_token_loss
    from runner.evals.prompts import read_jsonl, tokenize_example
    from runner.evals.sql import score_records

    imported = time.time() - STARTED
    setting = SETTINGS[args.setting]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    template = sqlqa_template(args.model)   # the runner's prompt for this model (its chat template, or tags)
    train = [tokenize_example(tokenizer, template, r, 4096) for r in read_jsonl(args.data / "train.jsonl")]
    records = read_jsonl(args.data / "test.jsonl")
    test = [tokenize_example(tokenizer, template, r, 4096) for r in records]
    dataset = Dataset.from_list([{"input_ids": ids, "labels": labels} for ids, labels in train])
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16 if cuda else torch.float32,
                                                 device_map="cuda" if cuda else None)
    curve: list[dict] = []
    first_step: list[float] = []

    class HeldOutLoss(TrainerCallback):
        """The held-out loss after every epoch, by the runner's own function, timed from process start."""

        def on_step_end(self, args_, state, control, model=None, **kwargs):
            if not first_step:
                first_step.append(time.time() - STARTED)

        def on_epoch_end(self, args_, state, control, model=None, **kwargs):
            model.eval()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = mean_token_loss(model, test, tokenizer.pad_token_id)["eval_loss"]
            model.train()
            curve.append({"epoch": round(state.epoch, 3), "step": state.global_step,
                          "wall_s": round(time.time() - STARTED, 2), "eval_loss": loss})
            print(json.dumps(curve[-1]), flush=True)

    config = SFTConfig(
        output_dir=str(args.work / args.setting), num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, lr_scheduler_type="linear",
        bf16=cuda, logging_steps=10, save_strategy="no", report_to=[], seed=42, max_length=4096,
        dataloader_num_workers=0, **setting["args"])
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **setting["lora"]),
                         callbacks=[HeldOutLoss()])
    train_started = time.time()
    trainer.train()
    train_s = time.time() - train_started

    tuned = trainer.model.eval()
    tokenizer.padding_side = "left"
    engine = TransformersEngine(tuned, tokenizer, GenerationSettings(max_new_tokens=args.max_new_tokens,
                                                                     stop=("[/SQL]",)))
    prompts = [ids[: next(i for i, lab in enumerate(labels) if lab != -100)] for ids, labels in test]
    answers = engine.generate(prompts)
    scored = [{**r, "prediction": a} for r, a in zip(records, answers)]
    scores = score_records(scored, 2.0)
    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        args.predictions.write_text("".join(json.dumps(r) + "\n" for r in scored))
    line = {"name": args.name or f"trl_{args.setting}", "runner": "trl", "setting": args.setting,
            "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "steps": trainer.state.global_step, "curve": curve, "eval_loss": curve[-1]["eval_loss"] if curve else None,
            "execution_accuracy": scores["execution_accuracy"], "exact_match": scores["exact_match"],
            "imports_s": round(imported, 2), "first_step_s": round(first_step[0], 2) if first_step else None,
            "train_s": round(train_s, 2), "wall_s": round(time.time() - STARTED, 2),
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "versions": {m.__name__: m.__version__ for m in (torch, __import__("trl"), __import__("peft"),
                                                             __import__("transformers"))}}
    with args.out.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(json.dumps({k: v for k, v in line.items() if k != "curve"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
