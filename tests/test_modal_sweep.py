"""Sweeps on Modal, with only the Modal SDK calls replaced: app.run, spawn, with_options(...).run.remote,
Volume reads and Secret lookups. Everything of ours (launcher, sweep, run folders, copy-back) is real."""

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import modal  # a hard dependency: a broken install fails here, not as skips

from runner import pipeline  # noqa: E402
from runner.backends import modal_app  # noqa: E402
from runner.app import main  # noqa: E402
from runner.records import read_json  # noqa: E402
from runner.runfolder import RunFolder  # noqa: E402
from runner.stages.logged import StageOutput  # noqa: E402

DELAY = 0.05   # seconds each fake stage "runs"


class FakeVolume:
    """Modal Volume reads, served from the folder the fake containers write to."""

    def __init__(self, root: Path):
        self.root = root

    def read_file(self, path):
        target = self.root / path
        if not target.is_file():
            raise FileNotFoundError(path)
        yield target.read_bytes()

    def batch_upload(self, force=False):
        root = self.root

        class Batch(_nullcontext):
            def put_file(self, local, remote):
                target = root / remote.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(Path(local).read_bytes())

        return Batch()

    def listdir(self, path, recursive=False):
        folder = self.root / path
        if not folder.is_dir():
            raise FileNotFoundError(path)
        return [SimpleNamespace(path=str(p.relative_to(self.root))) for p in sorted(folder.iterdir())]


class FakeModal:
    """Modal's side of a stage call: records it, then runs the app's real container body
    (`modal_app.run_stage_in_container`: skipped stages, the stage, its records) in-process, with only the
    stage's own process faked (`fake_stage`: it "runs" for DELAY and logs what a trainer would)."""

    def __init__(self, volume_dir: Path, fail: set[tuple[str, str]]):
        self.volume_dir, self.fail = volume_dir, fail   # fail: {(override substring, stage)}
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.running = self.high_water = 0
        self.barriers: dict[str, threading.Barrier] = {}   # stage → the jobs that must be in it at once

    def with_options(self, stage):
        def apply(**kwargs):
            return lambda: SimpleNamespace(run=SimpleNamespace(remote=lambda request: self.remote(stage, kwargs, request)))
        return apply

    def remote(self, stage, kwargs, request):
        overrides = " ".join(read_json(self.volume_dir / request["run_id"] / "job.json")["overrides"])
        with self.lock:
            self.running += 1
            self.high_water = max(self.high_water, self.running)
            call = {"stage": stage, "run_id": request["run_id"], "overrides": overrides, "start": time.monotonic(),
                    "gpu": kwargs.get("gpu"), "skipped": dict(request["skipped"])}
            self.calls.append(call)
        try:
            return modal_app.run_stage_in_container(request, stage)
        finally:
            with self.lock:
                self.running -= 1
                call["end"] = time.monotonic()

    def fake_stage(self, cmd, log_file, stage, env=None, cwd=None, label=None, standby=None, on_record=None):
        """The stage's process (pipeline.run_logged's part): its log, its exit code, a trainer's metric lines."""
        overrides = " ".join(read_json(Path(log_file).parents[1] / "job.json")["overrides"])
        time.sleep(DELAY)
        if stage in self.barriers:
            self.barriers[stage].wait()   # side by side, or BrokenBarrierError after its timeout
        Path(log_file).write_text(f"{stage} log\n")
        failing = any(text in overrides and stage == failing for text, failing in self.fail)
        records = [{"loss": 2.0, "wall_s": 1.0}, {"loss": 1.0, "wall_s": 2.0}] if stage == "train" else []
        for _ in records if on_record is not None else ():
            on_record()
        return StageOutput(returncode=1 if failing else 0, records=records, tail=["boom"] if failing else [])

    def calls_of(self, stage):
        return [c for c in self.calls if c["stage"] == stage]


class FakeCall:
    """A spawned sweep: runs the app's real `sweep` body in-process (Modal's local execution)."""

    object_id = "fc-test"

    def __init__(self, args):
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args):
        try:
            self.result = modal_app.sweep.local(*args)
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def get(self, timeout=None):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError()
        if self.error:
            raise self.error
        return self.result


@pytest.fixture
def fake_modal(tmp_path, monkeypatch):
    volume_dir = tmp_path / "volume"
    monkeypatch.setenv("RUNNER_MODAL_RUNS_DIR", str(volume_dir))
    monkeypatch.setenv("RUNNER_MODAL_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    fake = FakeModal(volume_dir, fail=set())
    monkeypatch.setattr(pipeline, "run_logged", fake.fake_stage)
    for stage, cls in modal_app.STAGE_CLASSES.items():
        monkeypatch.setattr(cls, "with_options", fake.with_options(stage))
    calls: list[FakeCall] = []

    def spawn(*args):
        calls.append(FakeCall(args))
        return calls[-1]

    monkeypatch.setattr(modal_app.sweep, "spawn", spawn)
    monkeypatch.setattr(modal_app.app, "run", lambda **kw: _nullcontext())
    monkeypatch.setattr(modal, "enable_output", _nullcontext)
    monkeypatch.setattr(modal_app, "runs_volume", FakeVolume(volume_dir))
    monkeypatch.setattr(modal.Volume, "from_name", lambda name, **kw: FakeVolume(volume_dir))
    monkeypatch.setattr(modal.Secret, "from_name", lambda name, **kw: SimpleNamespace(hydrate=lambda: None, name=name))
    monkeypatch.setattr(modal.FunctionCall, "from_id", lambda call_id, **kw: calls[-1])
    fake.spawned = calls
    fake.local_root = tmp_path / "runs"
    yield fake
    for call in calls:   # a detached sweep still running must end before the fakes are undone
        call.thread.join(30)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def local_runs(root: Path) -> list[RunFolder]:
    return [RunFolder(p) for p in sorted(root.iterdir()) if (p / "job.json").exists()]


def test_sweep_runs_jobs_side_by_side_and_a_failure_stops_only_its_job(fake_modal, capsys):
    fake_modal.fail = {("lora_r=16", "train")}
    fake_modal.barriers["train"] = threading.Barrier(4, timeout=60)
    rc = main(["-m", "lora_r=8,16,32,64", "backend=modal", "gpu=a100", "backend.poll_s=0.05", "stages.merge=true",
               f"runs_root={fake_modal.local_root}"])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 1, captured.err
    # four jobs at once: all four trains were in their stage together (the barrier let them through)
    assert len(fake_modal.calls_of("train")) == 4 and not fake_modal.barriers["train"].broken
    assert fake_modal.high_water == 4
    # the failed job stopped after train; the others ran every stage
    by_run = {}
    for call in fake_modal.calls:
        by_run.setdefault(call["overrides"].split()[0], []).append(call["stage"])
    assert by_run["lora_r=16"][-1] == "train"
    for r in ("8", "32", "64"):
        assert by_run[f"lora_r={r}"][-3:] == ["train", "merge", "eval"]
    # records copied back to the local runs root, with the final state
    states = {read_json(f.path / "job.json")["overrides"][0]: f.status() for f in local_runs(fake_modal.local_root)}
    assert (states["lora_r=16"]["state"], states["lora_r=16"]["failed_stage"]) == ("failed", "train")
    assert [s["state"] for k, s in states.items() if k != "lora_r=16"] == ["succeeded"] * 3
    for folder in local_runs(fake_modal.local_root):
        assert read_json(folder.path / "modal.json")["call_id"] == "fc-test"
        assert (folder.path / "logs" / "prepare.log").read_text() == "prepare log\n"
        assert (folder.path / "config.yml").read_text().count("/volume/") > 0   # the config as trained
    # the sweep table: one row per job, with status and loss
    table = out[out.index("job  overrides"):]
    assert "failed (train)" in table and table.count("succeeded") == 3 and "1.000" in table


def test_jobs_sharing_data_preprocess_once_and_download_each_model_once(fake_modal):
    rc = main(["-m", "lora_r=8,16", "sequence_len=128,256", "backend=modal", "gpu=a100",
               "backend.poll_s=0.05", f"runs_root={fake_modal.local_root}"])
    assert rc == 0
    # two sequence lengths → two preprocess groups; each tokenised once, by its first job
    preprocess = fake_modal.calls_of("preprocess")
    assert sorted(c["overrides"].split()[1] for c in preprocess) == ["sequence_len=128", "sequence_len=256"]
    followers = [c for c in fake_modal.calls_of("train") if c["skipped"]]
    assert len(followers) == 2 and all("prepared data shared with run" in c["skipped"]["preprocess"] for c in followers)
    # the container body wrote the followers' preprocess as skipped, and the sweep copied that back
    follower_ids = {c["run_id"] for c in followers}
    for folder in local_runs(fake_modal.local_root):
        entry = folder.status()["stages"]["preprocess"]
        if folder.run_id in follower_ids:
            assert entry["state"] == "skipped" and "prepared data shared with run" in entry["reason"]
        else:
            assert entry["state"] == "succeeded"
    # one model: its first job's prepare ended before any other prepare began
    prepares = sorted(fake_modal.calls_of("prepare"), key=lambda c: c["start"])
    assert all(later["start"] >= prepares[0]["end"] for later in prepares[1:])


def test_max_parallel_bounds_the_jobs_running_at_once(fake_modal):
    fake_modal.barriers["train"] = threading.Barrier(2, timeout=60)   # two at once, in pairs
    # two rounds of jobs: short enough stages for both to fit the sweep function (runner/backends/modal_bounds.py)
    rc = main(["-m", "lora_r=8,16,32,64", "backend=modal", "gpu=a100", "backend.max_parallel=2", "backend.timeout_h=2",
               "backend.poll_s=0.05", f"runs_root={fake_modal.local_root}"])
    assert rc == 0 and fake_modal.high_water == 2 and not fake_modal.barriers["train"].broken


def test_each_job_trains_on_its_own_gpus(fake_modal):
    assert main(["-m", "gpu=a100x2,h100x4", "backend=modal", "backend.poll_s=0.05", "stages.merge=true",
                 f"runs_root={fake_modal.local_root}"]) == 0
    assert sorted(c["gpu"] for c in fake_modal.calls_of("train")) == ["A100-80GB:2", "H100:4"]
    assert sorted(c["gpu"] for c in fake_modal.calls_of("eval")) == ["A100-80GB:2", "H100:4"]
    assert {c["gpu"] for c in fake_modal.calls_of("merge")} == {None}


def test_turned_off_stages_are_not_called_and_are_recorded_as_skipped(fake_modal):
    assert main(["backend=modal", "gpu=a100", "stages.merge=false", "stages.eval=false", "backend.poll_s=0.05",
                 f"runs_root={fake_modal.local_root}"]) == 0
    assert [c["stage"] for c in fake_modal.calls] == ["prepare", "preprocess", "train"]
    (folder,) = local_runs(fake_modal.local_root)
    assert folder.status()["stages"]["merge"] == {**folder.status()["stages"]["merge"], "state": "skipped",
                                                 "reason": "turned off (stages.merge=false)"}


def test_detach_returns_run_ids_and_sync_pulls_results_later(fake_modal, capsys):
    from runner import runs

    assert main(["-m", "lora_r=8,16", "backend=modal", "gpu=a100", "detach=true",
                 f"runs_root={fake_modal.local_root}"]) == 0
    # the run ids, one a line; the detached sweep (a thread here) may already be logging its stages
    ids = [line for line in capsys.readouterr().out.splitlines() if re.fullmatch(r"\d{8}-\d{6}-[\w.-]+", line)]
    folders = local_runs(fake_modal.local_root)
    assert sorted(ids) == [f.run_id for f in folders] and len(ids) == 2
    assert {f.status()["state"] for f in folders} == {"submitted"}
    assert "submitted" in runs.list_runs(fake_modal.local_root)
    fake_modal.spawned[-1].get()          # the sweep carries on without us; wait for it here
    assert runs.main(["--runs-root", str(fake_modal.local_root), "sync"]) == 0
    out = capsys.readouterr().out
    assert out.count("succeeded") == 2 and "modal" in out
    assert {f.status()["state"] for f in folders} == {"succeeded"}
    assert (folders[0].path / "logs" / "train.log").exists()
    assert "nothing to sync" in runs.sync(fake_modal.local_root, [])


def test_a_stage_that_dies_without_a_record_is_marked_failed(fake_modal, monkeypatch):
    """A timeout or lost container leaves no 'failed' in status.json: the sweep writes it."""
    def timed_out(**kwargs):
        def remote(request):
            raise modal.exception.FunctionTimeoutError("Function timed out after 43200 s")
        return lambda: SimpleNamespace(run=SimpleNamespace(remote=remote))

    monkeypatch.setattr(modal_app.Train, "with_options", timed_out)
    assert main(["backend=modal", "gpu=a100", "backend.poll_s=0.05", f"runs_root={fake_modal.local_root}"]) == 1
    (folder,) = local_runs(fake_modal.local_root)
    status = folder.status()
    assert status["state"] == "failed" and status["failed_stage"] == "train"
    assert status["stages"]["train"]["state"] == "failed"
    assert "FunctionTimeoutError" in status["stages"]["train"]["error"]


def test_sync_of_a_local_run_or_unknown_run_is_a_one_line_error(fake_modal, capsys, plan):
    from runner import runs

    job = plan(f"runs_root={fake_modal.local_root}").for_run("20260101-000000-tiny-lora-abcd")
    RunFolder.create(job)
    assert runs.main(["--runs-root", str(fake_modal.local_root), "sync", "20260101"]) == 2
    assert "ran locally" in capsys.readouterr().err.strip().splitlines()[0]


def test_data_outside_the_package_is_uploaded_and_used_from_the_runs_volume(fake_modal):
    data = Path(__file__).parent / "data" / "alpaca.jsonl"
    assert main(["backend=modal", "gpu=a100", "dataset=alpaca", f"dataset.path={data}", "backend.poll_s=0.05",
                 f"runs_root={fake_modal.local_root}"]) == 0
    (uploaded,) = (fake_modal.volume_dir / "_data").glob("*/alpaca.jsonl")
    assert uploaded.read_bytes() == data.read_bytes()
    (folder,) = local_runs(fake_modal.local_root)
    assert f"path: {uploaded}" in (folder.path / "config.yml").read_text()   # the config as trained remotely


def test_a_failure_of_modal_itself_is_one_line_and_marks_the_runs_failed(fake_modal, monkeypatch, capsys):
    class Broken:
        object_id = "fc-broken"

        def get(self, timeout=None):
            raise modal.exception.RemoteError("Image build failed\n(build log above)")

    monkeypatch.setattr(modal_app.sweep, "spawn", lambda *args: Broken())
    assert main(["backend=modal", "gpu=a100", f"runs_root={fake_modal.local_root}"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "error: Modal: Image build failed"
    (folder,) = local_runs(fake_modal.local_root)
    assert folder.status()["state"] == "failed"
