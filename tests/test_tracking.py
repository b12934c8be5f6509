"""Tracking for real, the report, and secrets: a real sweep on the tiny model logs to a real MLflow file
store (params, tags, artifacts, the trainer's losses and the eval figures, one tracking run per job), ends
by writing its report (HTML + PNGs, looked at in headless Chromium where installed); a W&B run in offline
mode holds the same; no secret from the environment lands in any file a run writes."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SECRETS = {"WANDB_API_KEY": "wandbkey-0123456789abcdef0123456789abcdef01234567",
           "HF_TOKEN": "hf_sEcReTtOkEnThAtMuStNeVeRbEwRiTtEn", "HUGGING_FACE_HUB_TOKEN": "hf_aNoThErSeCrEtToKeNvAlUe"}
QUICK = ["num_epochs=1", "max_steps=4", "save_steps=4", "eval.limit=4", "eval.max_new_tokens=24"]


def run(*args, cwd, env=None, module="runner", timeout=900):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_no_secrets(*roots: Path) -> int:
    scanned = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                scanned += 1
                for name, value in SECRETS.items():
                    assert value.encode() not in data, f"{name} leaked into {path}"
    return scanned


def wandb_records(path: Path) -> list:
    """The records of a W&B offline transaction log (.wandb): LevelDB's log format (32 KiB blocks; each
    record a 7-byte header of crc, length, type: full, first, middle, last) after a 7-byte ':W&B' header."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        room = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if room >= 7 else (0, 0, 0)
        if kind == 0:   # the block's zero padding
            pos += room
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return out


def check_page(page: Path) -> list[str]:
    """The report page's embedded PNGs decode, and match the files beside it; returns the charts' names."""
    from PIL import Image

    html = page.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*" data-file="([^"]+)">', html)
    for data, name in images:
        raw = base64.b64decode(data)
        assert raw == (page.parent / name).read_bytes()
        width, height = Image.open(io.BytesIO(raw)).size
        assert width > 300 and height > 200
    return [name for _, name in images]


def screenshot(page: Path, out: Path) -> Path | None:
    browser = next((shutil.which(b) for b in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:   # said in the run's warnings summary, and in the README: not a silent pass
        import warnings

        warnings.warn("no headless Chromium on this machine: the sweep's report page was checked as HTML and "
                      "PNGs, not looked at in a browser")
        return None
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out}", "--window-size=1200,3000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return out


@pytest.mark.slow
def test_a_sweep_tracked_in_mlflow_tokenises_once_and_ends_with_its_report(tmp_path):
    import mlflow  # noqa: F401 - in the local extra
    root = tmp_path / "runs"
    result = run("-m", "lora_r=4,8", "tracking=mlflow", *QUICK, "stages.merge=false", f"runs_root={root}",
                 cwd=tmp_path, env=SECRETS)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p for p in root.iterdir() if (p / "job.json").is_file())
    assert len(runs) == 2

    # the second job's data key is the first's: its preprocess reuses the tokens, its train loads them
    first, second = runs
    assert json.loads((first / "status.json").read_text())["stages"]["preprocess"]["folded"] == "train"
    assert "Unable to find prepared dataset" in (first / "logs" / "train.log").read_text()   # it tokenised
    assert f"preprocess  reused: tokenised by run {first.name}" in result.stderr
    assert json.loads((second / "status.json").read_text())["stages"]["preprocess"]["reused"] == first.name
    assert not (second / "logs" / "preprocess.log").exists()
    train_log = (second / "logs" / "train.log").read_text()
    assert "Loading prepared dataset from disk" in train_log and "Unable to find prepared dataset" not in train_log

    # one MLflow run per job, with the runner's records and the trainer's losses
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    for folder in runs:
        record = json.loads((folder / "tracking.json").read_text())
        assert record["tracker"] == "mlflow" and record["tracking_uri"] == store
        tracked = client.get_run(record["run_id"])
        assert tracked.info.status == "FINISHED" and tracked.info.run_name == folder.name
        assert tracked.data.tags["runner.run_id"] == folder.name and tracked.data.tags["runner.model"] == "tiny"
        assert tracked.data.tags["runner.tracking"] == "mlflow" and "lora_r=" in tracked.data.tags["runner.overrides"]
        assert tracked.data.params["override.lora_r"] in ("4", "8")
        assert "learning_rate" in tracked.data.params and "_name_or_path" in tracked.data.params   # the trainer's
        metrics = tracked.data.metrics
        assert "loss" in metrics or "train_loss" in metrics                            # logged by the trainer
        for key in ("eval/base/execution_accuracy", "eval/tuned/execution_accuracy", "eval/tuned/exact_match",
                    "runner/train_loss_last"):
            assert key in metrics, key
        assert len(client.get_metric_history(record["run_id"], "loss")) >= 2
        artifacts = {a.path for a in client.list_artifacts(record["run_id"], "runner")}
        assert {"runner/composed.yaml", "runner/config.yml", "runner/job.json", "runner/provenance.json"} <= artifacts
        shown = run("--runs-root", str(root), "show", folder.name, module="runner.runs", cwd=tmp_path)
        assert f"MLflow run {record['run_id']}" in shown.stdout

    # the sweep ends with its report: every chart, in one page
    page = Path(re.search(r"^report: (\S+index\.html)$", result.stdout, re.M).group(1))
    assert page.parent.parent.parent.name == "_sweeps"
    assert check_page(page) == ["loss.png", "params.png", "base_vs_tuned.png", "time_cost.png"]
    html = page.read_text()
    assert all(folder.name in html for folder in runs) and "lora_r=4" in html and "lora_r=8" in html
    shot = screenshot(page, tmp_path / "shot.png")
    if shot is not None:
        from PIL import Image

        image = Image.open(shot).convert("L")
        colours = image.getcolors(maxcolors=1 << 16) or []
        assert image.size[0] >= 1000 and len(colours) > 50   # charts drawn, not a blank page

    # the report command on two named runs
    out = tmp_path / "two"
    again = run("--runs-root", str(root), "report", runs[0].name, runs[1].name, "--out", str(out),
                module="runner.runs", cwd=tmp_path)
    assert again.returncode == 0 and (out / "index.html").is_file() and "params.png" in check_page(out / "index.html")

    # no secret anywhere: run folders, logs, the tracking store, the sweep's records, the report
    assert assert_no_secrets(root) > 50


@pytest.mark.slow
def test_a_wandb_run_in_offline_mode_holds_the_config_and_figures(tmp_path):
    root = tmp_path / "runs"
    env = {**SECRETS, "WANDB_MODE": "offline"}   # a key in the environment, yet nothing goes online
    result = run("tracking=wandb", *QUICK, "stages.merge=false", f"runs_root={root}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = [p for p in root.iterdir() if (p / "job.json").is_file()]
    record = json.loads((folder / "tracking.json").read_text())
    assert record["tracker"] == "wandb" and record["mode"] == "offline" and record["open"].startswith("wandb sync ")
    logs = sorted((folder / "tracking" / "wandb").glob(f"offline-run-*-{record['run_id']}/*.wandb"))
    assert len(logs) >= 3   # the runner's record, the trainer's losses, the figures after each stage: one run id
    records = [r for log in logs for r in wandb_records(log)]
    kinds = {r.WhichOneof("record_type") for r in records}
    assert {"run", "config", "history", "summary", "artifact"} <= kinds
    assert {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"} == {record["run_id"]}
    updates = [r.config.update if r.WhichOneof("record_type") == "config" else r.run.config.update for r in records
               if r.WhichOneof("record_type") in ("config", "run")]
    config = {item.key: json.loads(item.value_json) for update in updates for item in update}
    assert config["runner"]["run_id"] == folder.name and config["runner"]["choices"]["tracking"] == "wandb"
    assert config["composed"]["lora_r"] == 16 and config["composed"]["run_id"] == folder.name
    artifacts = {r.artifact.name: {m.path for m in r.artifact.manifest.contents} for r in records
                 if r.WhichOneof("record_type") == "artifact"}
    assert {"composed.yaml", "config.yml", "job.json", "provenance.json"} <= artifacts[f"runner-config-{record['run_id']}"]
    history = {item.key or "/".join(item.nested_key) for r in records if r.WhichOneof("record_type") == "history"
               for item in r.history.item}
    assert "train/loss" in history                                       # the trainer's
    summary = {item.key or "/".join(item.nested_key) for r in records if r.WhichOneof("record_type") == "summary"
               for item in r.summary.update}
    assert {"eval/tuned/execution_accuracy", "eval/base/execution_accuracy", "runner/train_loss_last"} <= summary
    assert assert_no_secrets(root) > 10


def test_a_tracker_that_is_not_installed_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util

    from runner import validate
    from runner.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UserError, match=r"^tracking=mlflow needs the mlflow package on this machine: pip install mlflow-skinny"):
        validate.check_tracker_installed({"use_mlflow": True}, "local")
    validate.check_tracker_installed({"use_mlflow": True}, "modal")   # Modal's image has it


def test_report_errors_are_one_line(tmp_path):
    root = tmp_path / "runs"
    off = [f"stages.{s}=false" for s in ("prepare", "preprocess", "train", "merge", "eval")]
    assert run(*off, f"runs_root={root}", cwd=tmp_path).returncode == 0
    (folder,) = [p for p in root.iterdir() if (p / "job.json").is_file()]
    for args, message in ((["report", "nosuchrun"], "error: no run 'nosuchrun' under"),
                          (["report", "--bogus"], "error: unknown option '--bogus' for report"),
                          (["report", "--out"], "error: --out needs a folder")):
        result = run("--runs-root", str(root), *args, module="runner.runs", cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith(message) and "Traceback" not in result.stderr
    result = run("--runs-root", str(root), "report", folder.name[:15], "--out", str(tmp_path / "r"), module="runner.runs", cwd=tmp_path)
    assert result.returncode == 0 and folder.name in (tmp_path / "r" / "index.html").read_text()
    assert check_page(tmp_path / "r" / "index.html") == []   # nothing trained: a table, no charts
