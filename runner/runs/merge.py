"""`runs merge RUN ...`: write a finished run's merged model (adapter + base → outputs/merged) later.

The pipeline leaves the merge out by default (stages.merge=false): eval, infer and serve use base +
adapter, and a 7B merge writes 13 GB. This runs the same merge stage (axolotl's merge_lora) over the run's
folder when a merged copy is wanted: to upload, to serve without LoRA, to hand on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runner.backends.modal_records import modal_record
from runner.errors import UserError
from runner.records import write_json
from runner.runfolder import RunFolder

RUN_KEYS = ("state", "ended", "failed_stage", "interrupted_stage", "error", "process")   # the run's, not the stage's


def merge(folders: list[RunFolder]) -> int:
    from runner.pipeline import StageFailed, run_stage
    from runner.runs.again import still_running

    for folder in folders:   # every check first: nothing starts unless every run can be merged
        _check(folder, still_running(folder.status()))
    failed = 0
    for folder in folders:
        merged = folder.outputs / "merged"
        if (merged / "config.json").is_file():
            print(f"run {folder.run_id}: already merged: {merged}", file=sys.stderr)
            continue
        config, before = folder.composed(), folder.status()
        print(f"run {folder.run_id}: merging {folder.outputs} into {merged}", file=sys.stderr, flush=True)
        try:
            run_stage(folder, "merge", {**config, "stages": {**(config.get("stages") or {}), "merge": True}})
        except StageFailed as e:
            failed += 1
            print(f"error: run {folder.run_id}: merge failed" + (f": {e.reason}" if e.reason else "") +
                  f"; log: {e.log}", file=sys.stderr)
            continue
        finally:   # the run ended as it had; its merge stage entry says how the merge went
            status = folder.status()
            for key in RUN_KEYS:
                status.pop(key, None)
                if key in before:
                    status[key] = before[key]
            write_json(folder.path / "status.json", status)
        print(merged)
    return 1 if failed else 0


def _check(folder: RunFolder, running: bool) -> None:
    name = folder.run_id
    if modal_record(folder.path):
        raise UserError(f"run {name} ran on Modal: its weights are on the runs Volume; `runs merge` merges "
                        "local runs (on Modal, launch with stages.merge=true)")
    if running:
        raise UserError(f"run {name} is still running: merge it when it has finished")
    config = folder.composed()
    if not config.get("adapter"):
        raise UserError(f"run {name} is a full fine-tune: {folder.outputs} already holds the whole model")
    if not (Path(folder.outputs) / "adapter_config.json").is_file():
        raise UserError(f"run {name} has no adapter in {folder.outputs}: did its train stage finish?")
