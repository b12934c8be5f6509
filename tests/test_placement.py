"""backend=auto: a job runs here when this machine has its GPUs (or gpu=cpu), otherwise on Modal.

The machine's GPUs are faked where the runner reads them, an `nvidia-smi` on PATH."""

import os

import pytest
from fakes import nvidia_smi

from runner.backends.placement import card_matches, LocalGpu, local_gpus, place

H200 = "0, NVIDIA H200, 143771"
A100_40 = [f"{i}, NVIDIA A100-SXM4-40GB, 40960" for i in range(4)]


def gpus(lines) -> list[tuple[int, str, int]]:
    """"0, NVIDIA H200, 143771" → (0, "NVIDIA H200", 143771)"""
    rows = [line.split(", ") for line in lines]
    return [(int(index), name, int(memory)) for index, name, memory in rows]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """machine(*lines): this machine's nvidia-smi answers with these lines (none: no nvidia-smi at all)."""
    def _machine(*lines: str) -> None:
        bin_dir = tmp_path / f"bin{len(list(tmp_path.iterdir()))}"
        bin_dir.mkdir()
        if lines:
            nvidia_smi.install(bin_dir, gpus(lines))
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return _machine


def placed(plan, *overrides):
    job = plan(*overrides)
    return job.placement.backend, job.placement.reason, job


def test_cpu_jobs_run_here(plan, machine):
    machine()
    backend, reason, job = placed(plan)
    assert (backend, reason) == ("local", "gpu=cpu runs on this machine")
    assert job.config["backend"]["name"] == "local" and job.compute.timeout_h is None


def test_a_gpu_job_goes_to_modal_from_a_machine_without_gpus(plan, machine):
    machine()
    backend, reason, job = placed(plan, "model=mistral", "adapter=qlora", "gpu=a100x4")
    assert backend == "modal" and reason == "the job asks for 4× A100-80GB and this machine has no GPU"
    assert job.compute.describe().startswith("backend=modal (auto)  gpu=A100-80GB:4  processes=4")


def test_a_machine_with_the_cards_runs_the_job_itself(plan, machine):
    machine(H200)
    backend, reason, job = placed(plan, "model=llama2", "gpu=h200")
    assert backend == "local" and "1× H200" in reason and "NVIDIA H200" in reason
    assert job.config["backend"]["name"] == "local"
    backend, reason, _ = placed(plan, "model=llama2", "gpu=h200x8")   # more GPUs than it has
    assert backend == "modal" and reason == "the job asks for 8× H200 and this machine has 1× NVIDIA H200"


def test_the_card_must_be_the_family_and_size_asked_for(plan, machine):
    machine(*A100_40)
    assert placed(plan, "model=llama2", "gpu=a100x4")[0] == "modal"          # 80 GB asked, 40 GB here
    assert placed(plan, "model=pythia", "gpu=a100-40gb")[0] == "local"
    assert placed(plan, "model=pythia", "gpu=h100")[0] == "modal"


def test_card_names_match_whole_words():
    l40s, l4 = LocalGpu(0, "NVIDIA L40S", 45), LocalGpu(0, "NVIDIA L4", 22)
    assert card_matches(l4, "L4", 24 * 0.9) and not card_matches(l40s, "L4", 24)
    assert card_matches(l40s, "L40S", 48 * 0.9)
    assert not card_matches(LocalGpu(0, "NVIDIA GH200 480GB", 95), "H200", 141)
    assert card_matches(LocalGpu(0, "Tesla T4", 15), "T4", 16)


def test_cuda_visible_devices_limits_what_counts(machine, monkeypatch):
    machine(*A100_40)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert [g.index for g in local_gpus()] == [1, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpus() == ()


def test_an_explicit_backend_is_kept(plan, machine):
    machine(H200)
    assert placed(plan, "gpu=h200", "model=llama2", "backend=modal")[:2] == ("modal", None)
    assert placed(plan, "gpu=a100x4", "model=llama2", "backend=local")[:2] == ("local", None)
    job = plan("backend=local")
    assert place(job.config).auto is False


def test_the_design_cards_command_without_gpus_or_credentials_is_one_line_and_creates_nothing(cli, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "none.toml"), PATH=f"{tmp_path}:/usr/bin:/bin")
    runs = tmp_path / "runs"
    result = cli("model=mistral", "adapter=qlora", "gpu=a100x4", f"runs_root={runs}", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: backend=auto sends this job to Modal (the job asks for 4× A100-80GB and this machine has no GPU), "
        "but no Modal credentials were found: run `modal setup`, or use backend=local on a machine with those GPUs")
    assert not runs.exists() and "Traceback" not in result.stdout + result.stderr

    dry = cli("model=mistral", "adapter=qlora", "gpu=a100x4", "dry_run=true", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "# compute: backend=modal (auto)  gpu=A100-80GB:4  processes=4" in dry.stdout
    assert "# backend: auto chose modal: the job asks for 4× A100-80GB and this machine has no GPU" in dry.stdout


def test_the_fake_nvidia_smi_answers_the_runners_query_and_refuses_what_the_real_one_refuses(tmp_path):
    import subprocess

    from runner.backends.placement import NVIDIA_SMI

    script = nvidia_smi.install(tmp_path, gpus([H200]))
    asked = subprocess.run([str(script), *NVIDIA_SMI[1:]], capture_output=True, text=True)
    assert (asked.returncode, asked.stdout) == (0, H200 + "\n")
    for args, message in [(["--query-gpu=index,name,memory_total", "--format=csv"], 'Field "memory_total" is not'),
                          (["--query-gpu=index", "--fromat=csv"], "Invalid combination"),
                          (["--query-gpu=index"], "Invalid combination")]:
        refused = subprocess.run([str(script), *args], capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr, args


def test_a_modal_stage_records_which_card_of_its_list_it_got(machine, tmp_path):
    """In a stage's container: nvidia-smi against the fallback list the stage asked with."""
    from runner.backends.modal_app import record_card
    from runner.records import write_json
    from runner.runfolder import RunFolder

    write_json(tmp_path / "run" / "status.json", {"state": "running", "stages": {"train": {"state": "running"}}})
    folder = RunFolder(tmp_path / "run")
    machine("0, NVIDIA A100-SXM4-80GB, 81920", "1, NVIDIA A100-SXM4-80GB, 81920")
    record_card(folder, "train", ["H100:2", "A100-80GB:2"])
    assert folder.status()["stages"]["train"] == {"state": "running", "gpu": "A100-80GB:2"}
    machine("0, NVIDIA L4, 23034")   # none of the list (or no GPU at all): nothing recorded
    record_card(folder, "eval", ["H100:2", "A100-80GB:2"])
    assert "eval" not in folder.status()["stages"]
