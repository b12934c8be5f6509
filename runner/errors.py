"""Errors meant for the user: one line, exit code 2, never a traceback."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class UserError(Exception):
    """Bad input. The CLI prints `error: <message>` and exits 2 before anything is dispatched."""

    exit_code = 2


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(options)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, word: str, options: Iterable[str]) -> UserError:
    options = sorted(set(options))
    hint = did_you_mean(word, options)
    if not hint and len(options) <= 20:
        hint = f" (choose from: {', '.join(options)})"
    return UserError(f"unknown {kind} '{word}'{hint}")


def report(error: UserError | KeyboardInterrupt) -> int:
    """Print the one line a command-line entry point shows for bad input or Ctrl-C; its exit code."""
    if isinstance(error, KeyboardInterrupt):   # Ctrl-C, or SIGTERM/SIGHUP (runner.signals.Stopped)
        name = getattr(error, "signal_name", None)
        print(f"\ninterrupted{f' by {name}' if name else ''}", file=sys.stderr)
        return getattr(error, "exit_code", 130)
    print(f"error: {error}", file=sys.stderr)
    return error.exit_code
