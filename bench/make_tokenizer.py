"""Build a 32000-token Llama/Mistral SentencePiece tokenizer offline.

The GPU machine has no internet, so the Hub's tokenizers are out of reach. The `mistral_common`
wheel (already in the GPU wheel list) ships Mistral-7B-v0.1's `tokenizer.model` (32000 pieces,
<unk>=0, <s>=1, </s>=2: the Llama-2 layout), so a random-init Llama-2-7B can use it unchanged.

    python bench/make_tokenizer.py OUT_DIR [MISTRAL_COMMON_WHEEL_OR_TOKENIZER_MODEL]
"""

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "mistral_common/data/tokenizer.model.v1"


def find_sentencepiece_model(source: str | None) -> Path:
    if source and source.endswith(".whl"):
        tmp = Path(tempfile.mkdtemp())
        with zipfile.ZipFile(source) as whl:
            (tmp / "tokenizer.model").write_bytes(whl.read(MEMBER))
        return tmp / "tokenizer.model"
    if source:
        return Path(source)
    import mistral_common  # installed: read the file from the package

    return Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def main() -> None:
    out = Path(sys.argv[1])
    spm_model = find_sentencepiece_model(sys.argv[2] if len(sys.argv) > 2 else None)
    import json

    from transformers import AutoTokenizer

    # transformers 5 converts tokenizer.model to a fast tokenizer when loaded through AutoTokenizer
    # (the LlamaTokenizerFast(vocab_file=...) constructor no longer reads the SentencePiece file).
    src = Path(tempfile.mkdtemp())
    shutil.copy(spm_model, src / "tokenizer.model")
    (src / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
        "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    tok = AutoTokenizer.from_pretrained(src)
    assert len(tok) == 32000 and tok.bos_token_id == 1 and tok.eos_token_id == 2, len(tok)
    tok.save_pretrained(out)
    ids = tok("[INST] SELECT name FROM head [/INST]")["input_ids"]
    print(f"tokenizer: {len(tok)} tokens, bos={tok.bos_token_id} eos={tok.eos_token_id} -> {out}; sample {ids}")


if __name__ == "__main__":
    main()
