"""The base model scores the same for every job of a sweep on the same held-out split: its figures (and the
per-record files behind them) are kept once in <runs_root>/_eval_cache and copied into later runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.evals import generate
from runner.evals.heldout import HeldOut
from runner.evals.settings import EvalSettings

# what the base's figures rest on, per record (answers with their scores, losses), kept with them
PER_RECORD_FILES = ("predictions-base.jsonl", "losses-base.json")


def base_cache(config: dict[str, Any], ref: generate.ModelRef, split: HeldOut, settings: EvalSettings,
                engine: str | None) -> Path:
    """Where this base's figures for this split are cached."""
    from runner.cache import base_eval_key, digest, eval_cache_dir

    return eval_cache_dir(config, base_eval_key(config, ref, engine, settings, digest([split.name, split.records])))


def cached_base(run_dir: Path, cache: Path) -> dict[str, Any] | None:
    import shutil

    from runner.records import read_json

    if not (cache / "figures.json").is_file():
        return None
    figures = read_json(cache / "figures.json")
    for name in PER_RECORD_FILES:
        if (cache / name).is_file():
            (run_dir / "eval").mkdir(parents=True, exist_ok=True)
            shutil.copy(cache / name, run_dir / "eval" / name)
    print(f"eval: base figures reused from run {figures.get('cached_from')} ({cache})", flush=True)
    return figures


def record_figures(run_dir: Path, variant: str, figures: dict[str, Any], cache: Path | None) -> None:
    """Print a model's figures; the base's also go to the eval cache for the sweep's other jobs."""
    import shutil

    from runner.records import write_json

    print(f"eval: {variant} " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    if cache is None:
        return
    staging = cache.with_name(cache.name + f".{run_dir.name}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in PER_RECORD_FILES:
        if (run_dir / "eval" / name).is_file():
            shutil.copy(run_dir / "eval" / name, staging / name)
    write_json(staging / "figures.json", {**figures, "cached_from": run_dir.name})
    try:
        staging.rename(cache)   # another job may have put it there first: then theirs stays
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
