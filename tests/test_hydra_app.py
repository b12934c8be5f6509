"""`runner` is a Hydra application: Hydra's flags, help, shell completion and config search path work, and
a team's own repo of groups and experiments layers over the shipped conf/. None of the inspection flags
create anything."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent
TINY_MODEL = (ROOT / "conf" / "model" / "tiny.yaml").read_text()
ALL_STAGES_OFF = [f"stages.{s}=false" for s in ("prepare", "preprocess", "train", "merge", "eval")]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory: whatever a command leaves there, the test sees."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def runner(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture
def team_repo(tmp_path):
    """A team's own git repo: a model option and an experiment of theirs, committed."""
    repo = tmp_path / "team"
    (repo / "conf" / "model").mkdir(parents=True)
    (repo / "conf" / "experiment").mkdir()
    (repo / "conf" / "model" / "tinier.yaml").write_text(TINY_MODEL.replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
    (repo / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: tinier\n  - override /adapter: lora\nlora_r: 4\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "our experiment"], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return repo, commit


def test_cfg_shows_the_composed_config_and_creates_nothing(workdir):
    job = runner("--cfg", "job", "model=llama2", "gpu=h100", "lora_r=32", cwd=workdir)
    assert job.returncode == 0, job.stderr
    config = yaml.safe_load(job.stdout)
    assert config["lora_r"] == 32 and config["base_model"] == "meta-llama/Llama-2-7b-hf"
    assert config["gpu"]["modal"] == "H100" and "hydra" not in config
    assert config["run_dir"] == "${abspath:${runs_root}}/${run_id}"
    resolved = yaml.safe_load(runner("--cfg", "job", "--resolve", cwd=workdir).stdout)
    assert resolved["run_dir"] == str(workdir / "runs" / "None") and resolved["dataset_prepared_path"].startswith("/")
    package = runner("--cfg", "job", "--package", "gpu", cwd=workdir)
    assert package.stdout.startswith("# @package gpu") and yaml.safe_load(package.stdout)["modal"] is None
    hydra = yaml.safe_load(runner("--cfg", "hydra", cwd=workdir).stdout)["hydra"]
    assert hydra["sweeper"]["_target_"] == "runner.launcher.RunnerSweeper"
    assert hydra["launcher"]["_target_"] == "runner.launcher.RunnerLauncher"
    everything = yaml.safe_load(runner("--cfg", "all", cwd=workdir).stdout)
    assert "hydra" in everything and "lora_r" in everything
    assert list(workdir.iterdir()) == []


def test_info_shows_defaults_tree_config_and_search_path(workdir, team_repo):
    tree = runner("--info", "defaults-tree", "gpu=t4", "model=pythia", cwd=workdir)
    assert tree.returncode == 0, tree.stderr
    assert "recipe: fp16" in tree.stdout and "gpu: t4" in tree.stdout and "runner_schema" in tree.stdout
    config = runner("--info", "config", cwd=workdir)
    assert "Config" in config.stdout and "lora_r: 16" in config.stdout
    repo, _ = team_repo
    search = runner("--info", "searchpath", "--config-dir", str(repo / "conf"), cwd=workdir)
    assert f"file://{repo / 'conf'}" in search.stdout and f"file://{ROOT / 'conf'}" in search.stdout
    assert list(workdir.iterdir()) == []


def test_help_is_generated_from_the_groups_and_the_schema(workdir, team_repo):
    result = runner("--help", cwd=workdir)
    assert result.returncode == 0 and result.stdout.startswith("runner: config-as-code fine-tuning")
    assert "recipe: cpu, fp16, packed_bf16, seed" in result.stdout
    assert "model: auto, codellama, llama2, llama3, mistral, mixtral, pythia, qwen2.5, smollm2, tiny" in result.stdout
    assert "  eval        the eval stage's settings" in result.stdout and "--shell-completion" in result.stdout
    repo, _ = team_repo   # a team's own options join the list
    assert "tinier" in runner("--help", "--config-dir", str(repo / "conf"), cwd=workdir).stdout
    assert list(workdir.iterdir()) == []


def test_a_teams_repo_layers_its_own_options_and_experiments_over_ours(workdir, team_repo):
    repo, commit = team_repo
    dry = runner("--config-dir", str(repo / "conf"), "experiment=mine", "dry_run=true", cwd=workdir)
    assert dry.returncode == 0, dry.stderr
    assert "model=tinier" in dry.stdout and "experiment=mine" in dry.stdout
    config = yaml.safe_load(dry.stdout)
    assert config["lora_r"] == 4 and config["learning_rate"] == 1.0e-3
    by_searchpath = runner(f"hydra.searchpath=[file://{repo / 'conf'}]", "model=tinier", "--cfg", "job", cwd=workdir)
    assert yaml.safe_load(by_searchpath.stdout)["learning_rate"] == 1.0e-3, by_searchpath.stderr
    # a real run (stages off, so it is quick) records the team repo's commit beside ours
    runs = workdir / "runs"
    result = runner("--config-dir", str(repo / "conf"), "experiment=mine", *ALL_STAGES_OFF, f"runs_root={runs}",
                    cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = [p for p in runs.iterdir() if not p.name.startswith("_")]
    provenance = json.loads((run / "provenance.json").read_text())
    (team,) = provenance["config_repos"]
    assert team["git"]["commit"] == commit and team["git"]["dirty"] is False
    assert team["experiment"] == str(repo / "conf" / "experiment" / "mine.yaml")
    assert provenance["git"]["repo"] == str(ROOT)
    # a typo in the team's options gets the same suggestion as ours
    typo = runner("--config-dir", str(repo / "conf"), "model=tinierr", cwd=workdir)
    assert typo.returncode == 2 and typo.stderr.strip() == "error: unknown model option 'tinierr' (did you mean 'tinier'?)"


def test_a_sweep_is_validated_before_any_job_starts(workdir):
    runs = workdir / "runs"
    result = runner("-m", "lora_r=8,0", f"runs_root={runs}", cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: lora_r must be a whole number of at least 1, or null, got 0"
    assert not runs.exists() and list(workdir.iterdir()) == []


def test_a_sweep_of_dry_runs_prints_every_job_and_creates_nothing(workdir):
    result = runner("-m", "lora_r=8,16", "gpu=cpu,t4", "model=pythia", "dry_run=true", cwd=workdir)
    assert result.returncode == 0, result.stderr
    jobs = [line for line in result.stdout.splitlines() if line.startswith("# overrides:")]
    assert jobs == ["# overrides: lora_r=8 gpu=cpu model=pythia dry_run=true",
                    "# overrides: lora_r=8 gpu=t4 model=pythia dry_run=true",
                    "# overrides: lora_r=16 gpu=cpu model=pythia dry_run=true",
                    "# overrides: lora_r=16 gpu=t4 model=pythia dry_run=true"]
    assert list(workdir.iterdir()) == []


@pytest.mark.skipif(not (BIN / "runner").exists(), reason="the runner console script is not installed")
def test_bash_completes_group_options_and_runner_keys(workdir):
    script = (
        'eval "$(runner -sc install=bash)"\n'
        'complete_line() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; words=($COMP_LINE);'
        ' COMP_CWORD=$(( ${#words[@]} - 1 )); hydra_bash_completion; echo "${COMPREPLY[@]}"; }\n'
        'complete_line "runner model=mi"\ncomplete_line "runner recipe=s"\ncomplete_line "runner eval.max_"\n')
    result = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["model=mistral model=mixtral", "recipe=seed", "eval.max_new_tokens="]
