"""Fetch a base model from the Hugging Face hub into the runner's cache (a Modal Volume on Modal)."""

from __future__ import annotations

import os
from pathlib import Path

# Weights in safetensors plus everything a tokenizer may need; skips duplicate .bin/.pth checkpoints.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py", "tokenizer*"]


def hub_cache(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "hub"


def download(repo_id: str, cache_dir: str | Path) -> Path:
    """Download (or find already cached) `repo_id`; HF_TOKEN from the environment for gated models."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        path = snapshot_download(
            repo_id=repo_id,
            cache_dir=str(hub_cache(cache_dir)),
            token=os.environ.get("HF_TOKEN") or None,
            allow_patterns=ALLOW_PATTERNS,
        )
    except GatedRepoError:
        raise SystemExit(f"error: {repo_id} is gated: accept its licence on huggingface.co and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise SystemExit(f"error: no model '{repo_id}' on the Hugging Face hub (or HF_TOKEN lacks access)") from None
    return Path(path)
