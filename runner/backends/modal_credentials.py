"""Modal credentials, looked up the way Modal does it, before anything is uploaded or started."""

from __future__ import annotations

from runner.errors import UserError

NO_CREDENTIALS = ("no Modal credentials found: run `modal setup` "
                  "(or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")


def require_credentials(auto_reason: str | None = None) -> None:
    """Modal's own lookup: MODAL_TOKEN_ID/SECRET in the environment, else the active ~/.modal.toml profile.

    `auto_reason`: backend=auto chose Modal for this reason, so the other way out is a machine with the GPUs."""
    from modal.config import config

    if config.get("token_id") and config.get("token_secret"):
        return
    if auto_reason:
        raise UserError(f"backend=auto sends this job to Modal ({auto_reason}), but no Modal credentials were "
                        "found: run `modal setup`, or use backend=local on a machine with those GPUs")
    raise UserError(NO_CREDENTIALS)
