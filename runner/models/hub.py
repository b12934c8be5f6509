"""Fetch a base model from the Hugging Face hub into the runner's cache (a Modal Volume on Modal)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.errors import UserError

# Weights in safetensors plus everything a tokenizer may need; skips duplicate .bin/.pth checkpoints.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py", "tokenizer*"]


class DownloadFailed(UserError):
    """A base model that could not be fetched: one line naming the repo and what to do."""


def hub_cache(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "hub"


def token_place(backend: dict[str, Any] | None) -> str:
    """Where the user puts the HF token for this backend, as a phrase for the messages below."""
    from runner.backends.registry import backend_named

    backend = backend or {}
    if not backend_named(backend.get("name")).remote:   # a platform's own secrets hold it there
        return "HF_TOKEN"
    secret = (backend.get("secrets") or {}).get("huggingface")
    if secret:
        return f"HF_TOKEN in the Modal Secret '{secret}' (backend.secrets.huggingface)"
    # public models need no Secret, so none is attached by default: say how to add one
    return ("HF_TOKEN in a Modal Secret (none is attached: `modal secret create huggingface HF_TOKEN=hf_...`, "
            "then run with backend.secrets.huggingface=huggingface)")


def download(repo_id: str, cache_dir: str | Path, token_where: str = "HF_TOKEN") -> Path:
    """Download (or find already cached) `repo_id`; HF_TOKEN from the environment for gated models.

    Every failure becomes DownloadFailed with one actionable line; `token_where` (see token_place) says
    where the token goes on this backend.
    """
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id=repo_id,
            cache_dir=str(hub_cache(cache_dir)),
            token=os.environ.get("HF_TOKEN") or None,
            allow_patterns=ALLOW_PATTERNS,
        )
    except Exception as error:  # noqa: BLE001 - every failure is the user's to act on, as one line
        raise DownloadFailed(explain(error, repo_id, hub_cache(cache_dir), token_where)) from None
    return Path(path)


def offline_message(repo_id: str, cache: Path) -> str:
    flag = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    return (f"{repo_id} is not in the model cache ({cache}) and {flag}=1 forbids downloading it: "
            f"unset {flag} to download it once, or set base_model to a local folder")


def check_reachable(config: dict[str, Any]) -> None:
    """Before a run folder is made: a hub model the prepare stage would download, offline and not in the
    model cache, is the user's one line now rather than a failed run (dry runs do not download: not here)."""
    from runner.models.spec import LOCAL_PATH_PREFIXES

    base = str(config.get("base_model") or "")
    downloads = (config.get("stages") or {}).get("prepare", True) and not config["model_spec"].get("build")
    if not base or not downloads or base.startswith(LOCAL_PATH_PREFIXES):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.is_offline_mode():
        return
    cache = hub_cache(config["cache_dir"])
    try:
        cached = try_to_load_from_cache(base, "config.json", cache_dir=str(cache), revision=config.get("revision_of_model"))
    except Exception:  # noqa: BLE001 - not a hub id: the prepare stage says so
        return
    if not isinstance(cached, str):
        raise DownloadFailed(offline_message(base, cache))


def explain(error: BaseException, repo_id: str, cache: Path, token_where: str = "HF_TOKEN") -> str:
    """The one line for a failed snapshot_download of `repo_id` (huggingface_hub 1.x exceptions)."""
    import httpx
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import (DisabledRepoError, GatedRepoError, HfHubHTTPError, HFValidationError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    host = urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    page = f"{constants.ENDPOINT}/{repo_id}"
    # snapshot_download falls back to the cache when the hub cannot be asked, and when the model is not
    # there raises LocalEntryNotFoundError *from* the real cause (offline mode, network, hub down)
    cause = error.__cause__ if isinstance(error, LocalEntryNotFoundError) and error.__cause__ else error
    if isinstance(cause, OfflineModeIsEnabled) or (
            isinstance(error, LocalEntryNotFoundError) and cause is error and constants.is_offline_mode()):
        return offline_message(repo_id, cache)
    if isinstance(cause, (httpx.TransportError, ConnectionError)):
        why = f"{type(cause).__name__}: {first_line(cause)}"
        # raised as is (no cache fallback): files were coming in, and what arrived stays in the cache;
        # except a proxy error, which huggingface_hub raises before it asks for anything
        if cause is error and not isinstance(cause, httpx.ProxyError):
            return f"the connection to {host} failed while downloading {repo_id} ({why}): run again to resume"
        return (f"cannot reach {host} to download {repo_id} ({why}) and it is not in the model cache "
                f"({cache}): check the network or proxy, or set base_model to a local folder")
    if isinstance(cause, GatedRepoError):
        if cause.response.status_code == 401 or not get_token():
            return (f"{repo_id} is gated: accept its licence on {page}, then set {token_where} "
                    f"to a token of that account")
        return (f"{repo_id} is gated and the account of {token_where} has no access: accept its licence on "
                f"{page} with that account (some repos also wait for the authors' approval)")
    if isinstance(cause, RepositoryNotFoundError):
        return (f"no model '{repo_id}' on the Hugging Face hub: check the name (base_model); "
                f"a private repo needs {token_where} set to a token with access")
    if isinstance(cause, RevisionNotFoundError):
        return f"{repo_id} has no such revision on the Hugging Face hub: check the branch, tag or commit"
    if isinstance(cause, DisabledRepoError):
        return f"{repo_id} has been disabled on the Hugging Face hub: choose another base_model"
    if isinstance(cause, HfHubHTTPError):
        status = cause.response.status_code
        advice = {401: f"{token_where} was rejected: replace it with a valid token",
                  403: f"the token in {token_where} needs read access to this repo",
                  429: "try again later"}.get(status, "try again later" if status >= 500 else "")
        # the server's own words say more than the generic status text ("403 Forbidden: None.")
        detail = first_line(cause.server_message or "") or first_line(cause)
        line = f"the Hugging Face hub answered HTTP {status} for {repo_id}: {detail}"
        return f"{line} ({advice})" if advice else line
    if isinstance(error, LocalEntryNotFoundError):
        return (f"{repo_id} is not in the model cache ({cache}) and could not be downloaded "
                f"({type(cause).__name__}: {first_line(cause)}): check the network, or set base_model "
                f"to a local folder")
    if isinstance(error, HFValidationError):
        return f"base_model '{repo_id}' is neither a local folder nor a hub repo id: {first_line(error)}"
    if isinstance(error, OSError):
        return f"cannot write {repo_id} into the model cache ({cache}): {error.strerror or first_line(error)}"
    return f"downloading {repo_id} failed: {type(error).__name__}: {first_line(error)}"


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an exception's text (hub messages often start with a blank line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines:
        return lines[0].rstrip(".")
    return "" if isinstance(error, str) else type(error).__name__
