"""Each Modal stage function's body, run in-process with Modal's local execution (`.local()`) and the
Volumes mapped to folders, builds the same run folder as the local backend, on the tiny model."""

import re
from pathlib import Path

import pytest
import yaml

import modal  # a hard dependency: a broken install fails here, not as skips
import axolotl  # noqa: F401 - the local extra the README installs

from runner.backends import local, modal_app  # noqa: E402
from runner.backends.modal_launcher import data_uploads, job_request  # noqa: E402
from runner.backends.modal_sweep import JobResult  # noqa: E402
from runner.paths import DATA_DIR  # noqa: E402
from runner.plan import plan_jobs  # noqa: E402
from runner.records import read_json  # noqa: E402
from runner.runfolder import RunFolder  # noqa: E402
from runner.settings import STAGES  # noqa: E402

pytestmark = pytest.mark.slow   # minutes: a real pipeline or every combination; CI runs it

# The tiny model on CPU, cut to two optimizer steps without evaluation, merge and eval turned off so
# the test stays short (their function bodies still run, and record the stage as skipped).
TINY = ["num_epochs=1", "max_steps=2", "sequence_len=128", "micro_batch_size=4", "val_set_size=0",
        "~test_datasets", "dataset.test_path=null", "stages.merge=false", "stages.eval=false"]


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def normalised(text: str, folder: Path, cache: Path) -> str:
    """Paths as the two backends place them: runs root, model cache, and the data (shipped here, uploaded
    by content to the runs Volume there)."""
    text = text.replace(str(folder.parent), "<runs>").replace(str(cache), "<cache>").replace(str(DATA_DIR), "<data>")
    text = re.sub(r"<runs>/_data/[0-9a-f]{16}", "<data>", text)
    return re.sub(r"\d{8}-\d{6}-tiny-lora-[0-9a-f]{4}", "<run_id>", text)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stage_functions_run_in_process_build_the_local_backends_run_folder(tmp_path, monkeypatch):
    # One runs root and one model cache for both, as the runs and pretrained Volumes are for all Modal
    # runs: the tiny model is built once and the second run reuses the first one's prepared data.
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    (outcome,) = local.run_jobs(plan_jobs([*TINY, f"runs_root={runs}", f"cache_dir={cache}"], False))
    assert outcome.state == "succeeded"
    (local_folder,) = [p for p in runs.iterdir() if not p.name.startswith("_")]

    monkeypatch.setenv("RUNNER_MODAL_RUNS_DIR", str(runs))
    monkeypatch.setenv("RUNNER_MODAL_PRETRAINED_DIR", str(cache))
    run_id = "20260101-000000-tiny-lora-abcd"
    # what the launcher sends: the records, resolved for the container's paths (the T4 only satisfies
    # the Modal settings' checks; the stages run on this CPU)
    (planned,) = plan_jobs([*TINY, "gpu.modal=T4"], False)
    job = job_request(planned, 1, run_id, runs, cache)
    for remote, local_file in data_uploads(planned).items():   # the launcher's upload to the runs Volume
        (runs / remote).parent.mkdir(parents=True, exist_ok=True)
        (runs / remote).write_bytes(Path(local_file).read_bytes())
    assert job["stages"] == {stage: stage not in ("merge", "eval") for stage in STAGES}
    modal_app.create_run(job)          # what the sweep function does first
    for stage in STAGES:               # then each stage's Modal function, in-process
        result = modal_app.STAGE_CLASSES[stage]().run.local({"run_id": run_id, "stage": stage, "skipped": {}})
        expected = "succeeded" if job["stages"][stage] else "skipped"
        assert result == {"run_id": run_id, "stage": stage, "state": expected}
    modal_app.finish_run(job, JobResult(1, run_id))
    modal_folder = runs / run_id

    # locally one process trains, so it tokenises too (preprocess folded into train); Modal keeps the stage
    assert files(modal_folder) == files(local_folder) | {"logs/preprocess.log"}
    assert {"config.yml", "composed.yaml", "job.json", "provenance.json", "status.json", "metrics.json",
            "logs/train.log", "outputs/adapter_model.safetensors"} <= files(modal_folder)
    assert (normalised((modal_folder / "config.yml").read_text(), modal_folder, cache)
            == normalised((local_folder / "config.yml").read_text(), local_folder, cache))
    composed = [yaml.safe_load(normalised((f / "composed.yaml").read_text(), f, cache)) for f in (modal_folder, local_folder)]
    for config in composed:   # the Modal job names a GPU string and its backend; the rest is the same
        del config["gpu"]["modal"], config["backend"]["name"]
    assert composed[0] == composed[1]
    local_status, modal_status = RunFolder(local_folder).status(), RunFolder(modal_folder).status()
    assert modal_status["state"] == local_status["state"] == "succeeded"
    assert local_status["stages"].pop("preprocess")["folded"] == "train"
    assert modal_status["stages"].pop("preprocess")["state"] == "succeeded"
    assert ({s: (e["state"], e.get("reason")) for s, e in modal_status["stages"].items()}
            == {s: (e["state"], e.get("reason")) for s, e in local_status["stages"].items()})
    assert set(read_json(modal_folder / "metrics.json")) == set(read_json(local_folder / "metrics.json"))
    provenance = read_json(modal_folder / "provenance.json")
    assert provenance["git"] == read_json(local_folder / "provenance.json")["git"]   # the launching checkout's
    assert provenance["modal"]["stack"].startswith("Python 3.12, torch 2.11.0")
