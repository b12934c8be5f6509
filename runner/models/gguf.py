"""A GGUF file (llama.cpp's format) → a Hugging Face model folder that axolotl, transformers and vLLM load.

transformers reads the GGUF's tokenizer and weights and dequantises them (with the `gguf` package); the
folder gets the weights as safetensors in `dtype` and the tokenizer with the special tokens fixed where a
GGUF names the wrong ones (SmolLM2's names `<|im_start|>` as EOS, and has no pad token).

    python -m runner.models.gguf FILE.gguf OUT_DIR [--eos TOKEN] [--pad TOKEN] [--dtype bfloat16]

Then `base_model=OUT_DIR` trains on it like any local folder. The conversion is written atomically and
recorded in OUT_DIR/runner-build.json (source file, size, special tokens); a folder already built from
the same file with the same settings is kept as it is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from runner.errors import UserError, report

MANIFEST = "runner-build.json"


def _recipe(gguf: Path, eos: str | None, pad: str | None, dtype: str) -> dict:
    stat = gguf.stat()
    return {"source": gguf.name, "bytes": stat.st_size, "eos": eos, "pad": pad, "dtype": dtype}


def is_converted(out_dir: Path, recipe: dict) -> bool:
    manifest = out_dir / MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()).get("gguf") == recipe


def convert(gguf: Path, out_dir: Path, eos: str | None = None, pad: str | None = None,
            dtype: str = "bfloat16") -> Path:
    """The converted folder (built now, or kept from an earlier conversion of the same file)."""
    gguf, out_dir = Path(gguf).expanduser().resolve(), Path(out_dir).expanduser()
    if not gguf.is_file():
        raise UserError(f"no GGUF file at {gguf}")
    recipe = _recipe(gguf, eos, pad, dtype)
    if is_converted(out_dir, recipe):
        return out_dir
    try:
        import gguf as _  # noqa: F401 - transformers needs it to read the file
    except ImportError as e:
        raise UserError("reading a GGUF file needs the gguf package: pip install gguf") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for role, token in (("eos_token", eos), ("pad_token", pad)):
        if token is None:
            continue
        if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id) and token != tokenizer.unk_token:
            raise UserError(f"{role} {token!r} is not in the GGUF's vocabulary")
        setattr(tokenizer, role, token)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # the weights are plain tensors once dequantised: newer transformers refuse to save a model that still
    # names its GGUF origin as a quantisation
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # the model's own records of its special tokens follow the tokenizer's (generation stops at EOS)
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id

    staging = out_dir.with_name(out_dir.name + ".converting")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    (staging / MANIFEST).write_text(json.dumps({"gguf": recipe}, indent=1) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.models.gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--eos", help="the end-of-sequence token, where the GGUF names another")
    parser.add_argument("--pad", help="the padding token (one the model does not generate)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    try:
        print(convert(args.gguf, args.out_dir, args.eos, args.pad, args.dtype))
    except UserError as e:
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
