"""Write the throughput-exploration recipes (full axolotl YAMLs) to bench/recipes/.

One shared base (LoRA r16 on all linear layers of a random-init Llama-2-7B, text-to-SQL data,
answer tokens only) plus one delta per variant, so each file can be run on its own:
    python -m axolotl.cli.train bench/recipes/NAME.yml
Paths are the GPU machine's: bench/explore.sh puts the model, tokenizer and data there.
Each variant carries the throughput prediction made before it ran (trainable tok/s on one H100).
"""

from pathlib import Path

import yaml

MODEL = "/tmp/bench/llama7b-random"
DATA = "/tmp/bench/sqlqa.jsonl"
PROMPT = ("[INST] Using the schema context below, generate a SQL query that answers the question.\n"
          "{input}\n{instruction} [/INST] ")

BASE = {
    "base_model": MODEL,
    "model_type": "LlamaForCausalLM",
    "special_tokens": {"pad_token": "<unk>"},  # keep the vocab at 32000 (no added pad row)
    "adapter": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,  # the LoRA kernels need dropout 0
    "lora_target_linear": True,
    "datasets": [{
        "path": DATA,
        "ds_type": "json",
        "type": {
            "field_instruction": "question",
            "field_input": "context",
            "field_output": "answer",
            "format": PROMPT,
            "no_input_format": "[INST] {instruction} [/INST] ",
        },
    }],
    "train_on_inputs": False,
    "val_set_size": 0,
    "dataset_prepared_path": "/tmp/bench/prepared",
    "sequence_len": 4096,
    "sample_packing": True,
    "eval_sample_packing": False,
    "pad_to_sequence_len": True,  # fixed shapes: no recompiles under torch.compile
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "num_epochs": 50,  # max_steps ends the run; 3000 records pack into ~40 steps an epoch
    "max_steps": 26,
    "optimizer": "adamw_torch_fused",
    "learning_rate": 2e-4,
    "lr_scheduler": "cosine",
    "warmup_steps": 0,
    "bf16": True,
    "tf32": True,
    "gradient_checkpointing": False,
    "attn_implementation": "sdpa",  # + packing: axolotl routes rows through torch varlen_attn
    "lora_mlp_kernel": True,
    "lora_qkv_kernel": True,
    "lora_o_kernel": True,
    "plugins": ["axolotl.integrations.liger.LigerPlugin", "bench.throughput_plugin.ThroughputPlugin"],
    "liger_rope": True,
    "liger_rms_norm": True,
    "liger_fused_linear_cross_entropy": True,
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
}

NO_LIGER = {"plugins": ["bench.throughput_plugin.ThroughputPlugin"], "liger_rope": None,
            "liger_rms_norm": None, "liger_fused_linear_cross_entropy": None}
NOSYNC = "runner.integrations.varlen_sync.VarlenSyncPlugin"
COMPILE = {"torch_compile": True, "max_steps": 30}  # more warm-up steps for compilation

# name: (prediction, delta on BASE)
VARIANTS = {
    # the seed recipe, rerun as this card's baseline (no packing, batch 32, checkpointing, SDPA)
    "seed": ("1 500", {**NO_LIGER, "sample_packing": False, "pad_to_sequence_len": False,
                       "micro_batch_size": 32, "gradient_checkpointing": True,
                       "lora_mlp_kernel": None, "lora_qkv_kernel": None, "lora_o_kernel": None,
                       "max_steps": 24}),
    # best measured earlier on an H200: packed 4096 x2, no checkpointing, Liger, LoRA kernels
    "liger": ("4 800", {}),
    "liger_compile": ("5 300", COMPILE),
    "liger_mb4": ("4 900", {"micro_batch_size": 4, "max_steps": 20}),
    "liger_s8192": ("4 800", {"sequence_len": 8192, "micro_batch_size": 1}),
    "liger_glu": ("4 800", {"liger_glu_activation": True}),
    "liger_flex_compile": ("5 200", {**COMPILE, "attn_implementation": "flex_attention"}),
    "liger_fp8_compile": ("6 000", {**COMPILE, "fp8": True}),
    "liger_nokernels": ("4 500", {"lora_mlp_kernel": False, "lora_qkv_kernel": False,
                                  "lora_o_kernel": False}),
    "liger_gc": ("3 500", {"gradient_checkpointing": True}),
    "liger_mb4_compile": ("5 400", {**COMPILE, "micro_batch_size": 4, "max_steps": 24}),
    "liger_s8192_compile": ("5 300", {**COMPILE, "sequence_len": 8192, "micro_batch_size": 1}),
    # second round, after mb4 (+16 %) and s8192 (+3 %) beat their predictions
    "liger_s8192_mb2": ("6 300", {"sequence_len": 8192, "micro_batch_size": 2, "max_steps": 20}),
    "liger_mb4_fp8_compile": ("7 000", {**COMPILE, "fp8": True, "micro_batch_size": 4,
                                        "max_steps": 24}),
    # third round (not yet run): one host sync per batch instead of ~4 per layer (varlen_sync_plugin)
    "liger_nosync": ("6 500", {"plugins": BASE["plugins"] + [NOSYNC]}),
    "liger_mb4_nosync": ("6 900", {"plugins": BASE["plugins"] + [NOSYNC], "micro_batch_size": 4,
                                   "max_steps": 20}),
}


def compose(name: str, delta: dict) -> dict:
    cfg = {**BASE, **delta, "output_dir": f"/tmp/bench/out/{name}"}
    return {k: v for k, v in cfg.items() if v is not None}


def main() -> None:
    out = Path(__file__).parent / "recipes"
    out.mkdir(exist_ok=True)
    for name, (prediction, delta) in VARIANTS.items():
        head = f"# generated by bench/make_recipes.py; predicted trainable tok/s on one H100: {prediction}\n"
        (out / f"{name}.yml").write_text(head + yaml.safe_dump(compose(name, delta), sort_keys=False))
    print(f"{len(VARIANTS)} recipes -> {out}")


if __name__ == "__main__":
    main()
