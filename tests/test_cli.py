"""The command line: dry-run output, bad input (one line, exit 2, nothing made), heavy imports."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from runner.datacheck import check_data_file


def test_dry_run_prints_axolotl_yaml_and_compute_spec(cli, tmp_path):
    result = cli("model=mistral", "adapter=qlora", "gpu=a100x4", "backend=local", "dry_run=true", f"runs_root={tmp_path}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# compute: backend=local  gpu=A100-80GB:4  processes=4" in out
    assert "est. cost ~$" in out
    import yaml

    config = yaml.safe_load(out)  # comments + YAML: the output is itself a usable axolotl config
    assert config["base_model"] == "mistralai/Mistral-7B-v0.1"
    assert config["adapter"] == "qlora" and config["load_in_4bit"] is True
    assert "gpu" not in config and "dry_run" not in config
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_dry_run_shows_modal_gpu_string_and_timeout(cli):
    result = cli("backend=modal", "gpu=h100x4", "model=mistral", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert "backend=modal  gpu=H100:4  processes=4  timeout=10 h" in result.stdout
    assert "at most $" in result.stdout


def test_modal_dry_run_shows_the_stack_of_the_lock(cli):
    from runner.stack import stack

    result = cli("backend=modal", "gpu=h100", "dry_run=true")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("# stack"))
    assert line == f"# stack (every Modal image): {stack().summary()}"
    assert "Python 3.12, torch 2.11.0 (CUDA 13.0), axolotl 0.19.0, vLLM 0.23.0" in line
    # what the containers see: the Volumes' paths in the config, the uploaded data, Secrets, each stage's resources
    assert re.search(r"^# containers \(Modal\): run folder /runs/<run_id> on Volume 'runner-runs', base weights in "
                     r"/pretrained \(Volume 'runner-pretrained'\), data uploaded to /runs/_data/[0-9a-f]{16}/sqlqa-train\.jsonl, "
                     r"/runs/_data/[0-9a-f]{16}/sqlqa-test\.jsonl; Secrets: none$", result.stdout, re.M)
    assert ("# stages (Modal): prepare CPU (4 cores, 16 GiB), 30 min; preprocess CPU (4 cores, 16 GiB), 30 min; "
            "train H100, 10 h × 2 attempts; eval H100, 1 h\n") in result.stdout
    config = yaml.safe_load(result.stdout)
    assert config["output_dir"] == "/runs/<run_id>/outputs" and config["dataset_prepared_path"] == "/runs/_prepared"
    assert [d["path"].rsplit("/", 1)[0] for d in config["datasets"] + config["test_datasets"]] == [
        f"/runs/_data/{data.sha256[:16]}" for data in (check_data_file(ROOT / "runner/data/sqlqa-train.jsonl", "sqlqa"),
                                                       check_data_file(ROOT / "runner/data/sqlqa-test.jsonl", "sqlqa"))]
    local = cli("backend=local", "dry_run=true")
    assert "# stack" not in local.stdout   # a local run uses what this machine has installed
    assert "# containers" not in local.stdout and "output_dir: /runs/" not in local.stdout


def test_dry_run_imports_no_torch_transformers_or_axolotl():
    code = ("import sys; from runner.app import main; rc = main(['model=mistral', 'gpu=a100x4', 'dry_run=true',"
            " 'backend=modal']); heavy = [m for m in ('torch', 'transformers', 'axolotl', 'modal') if m in sys.modules];"
            " print('HEAVY', heavy); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


BAD_INPUTS = [
    (["model=mistrall"], "unknown model option 'mistrall' (did you mean 'mistral'?)"),
    (["gpu=a100x3"], "unknown gpu option 'a100x3' (did you mean"),
    (["lora_rr=32"], "unknown axolotl key 'lora_rr' (did you mean 'lora_r'?)"),
    (["lora_r=abc"], "axolotl key 'lora_r' expects int, got str 'abc'"),
    (["adapter=qlora", "gpu=a100", "load_in_4bit=false"], "adapter=qlora needs load_in_4bit=true"),
    (["deepspeed=zero2"], "deepspeed=zero2 needs GPUs: gpu=cpu"),
    (["gpu=t4", "model=pythia", "bf16=true", "fp16=false"], "bf16=true but gpu=t4 has no bf16 support"),
    (["gpu=h100", "model=mistral", "deepspeed=zero2"], "deepspeed=zero2 shards state across GPUs but gpu=h100 has 1"),
    (["model=mixtral", "gpu=a100"], "model=mixtral with adapter=lora needs ~"),
    (["gpu=h100", "deepspeed=zero3_offload"], "adapter=lora with deepspeed=zero3_offload fails in axolotl 0.19"),
    (["dataset=alpaca"], "dataset.path is required here"),
    (["dataset=alpaca", "dataset.path=/no/such/file.jsonl"], "dataset file not found: /no/such/file.jsonl"),
    (["gpu=h100", "gpu.modal=H1000"], "unknown Modal GPU 'H1000' (did you mean 'H100'?)"),
    (["lora_r=8,16"], "is a sweep: add --multirun"),
    (["--bogus"], "unknown option '--bogus'"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_nothing_made(cli, tmp_path, args, message):
    result = cli(*args, f"runs_root={tmp_path}")  # a real run, not a dry run: still nothing may start
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_line,message", [
    ('{"question": "q", "context": "c"', "not valid JSON"),
    ('{"question": "q", "context": "CREATE TABLE t (a INT)"}', "missing field 'answer' needed by dataset=sqlqa"),
    ('["a list"]', "expected a JSON object"),
])
def test_bad_jsonl_line_is_reported_with_its_number(cli, tmp_path, bad_line, message):
    data = tmp_path / "data.jsonl"
    good = json.dumps({"question": "q", "context": "CREATE TABLE t (a INT)", "answer": "[SQL] SELECT a FROM t [/SQL]"})
    data.write_text(f"{good}\n{good}\n{bad_line}\n")
    runs = tmp_path / "runs"
    result = cli(f"dataset.path={data}", f"runs_root={runs}")
    assert result.returncode == 2
    assert f"error: {data}:3: {message}" in result.stderr, result.stderr
    assert not runs.exists()


def test_help(cli):
    result = cli("--help")
    assert result.returncode == 0 and "usage: runner [--multirun|-m]" in result.stdout
