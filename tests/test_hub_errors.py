"""A hub download that fails ends the run with one line saying which failure and what to do.

The unit tests replace huggingface_hub.snapshot_download, the boundary, with one that raises what
huggingface_hub 1.x itself raises (HTTP errors built by its own hf_raise_for_status from an httpx
response); the last ones run the real download and the real CLI offline.
"""

import errno

import httpx
import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import hf_raise_for_status

from runner.models import hub
from runner.stages import prepare

REPO = "mistralai/Mistral-7B-v0.1"
API = f"https://huggingface.co/api/models/{REPO}/revision/main"
FILE = f"https://huggingface.co/{REPO}/resolve/7231864981174d9bee8c7687c24c8344414eae6b/config.json"


def http_error(status: int, url: str, code: str | None = None, message: str | None = None) -> HfHubHTTPError:
    """The exception huggingface_hub raises for this hub response."""
    headers = {**({"X-Error-Code": code} if code else {}), **({"X-Error-Message": message} if message else {})}
    response = httpx.Response(status, headers=headers, request=httpx.Request("GET", url))
    with pytest.raises(HfHubHTTPError) as raised:
        hf_raise_for_status(response)
    return raised.value


def fallback_error(cause: Exception) -> LocalEntryNotFoundError:
    """What snapshot_download raises when the hub cannot be asked and the cache does not have the model."""
    try:
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder ...") from cause
    except LocalEntryNotFoundError as error:
        return error


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))   # ignore a login on this machine


def hub_raises(monkeypatch, error: BaseException) -> None:
    def snapshot_download(**_):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def failing_download(monkeypatch, tmp_path, error: BaseException, repo: str = REPO) -> str:
    hub_raises(monkeypatch, error)
    with pytest.raises(hub.DownloadFailed) as failed:
        hub.download(repo, tmp_path)
    message = str(failed.value)
    assert "\n" not in message and repo in message
    return message


def test_offline_mode_without_the_model_in_the_cache(monkeypatch, tmp_path):
    error = fallback_error(OfflineModeIsEnabled(f"Cannot reach {API}: offline mode is enabled."))
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"{REPO} is not in the model cache ({tmp_path / 'hub'}) and HF_HUB_OFFLINE=1 forbids downloading it: "
        "unset HF_HUB_OFFLINE to download it once, or set base_model to a local folder")


def test_no_network(monkeypatch, tmp_path):
    error = fallback_error(httpx.ConnectError("[Errno -2] Name or service not known"))
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"cannot reach huggingface.co to download {REPO} (ConnectError: [Errno -2] Name or service not known) "
        f"and it is not in the model cache ({tmp_path / 'hub'}): check the network or proxy, "
        "or set base_model to a local folder")
    proxy = httpx.ProxyError("407 Proxy Authentication Required")   # raised as is, before any download
    assert failing_download(monkeypatch, tmp_path, proxy).startswith(
        f"cannot reach huggingface.co to download {REPO} (ProxyError: 407 Proxy Authentication Required)")


def test_connection_lost_while_downloading(monkeypatch, tmp_path):
    error = httpx.ReadTimeout("The read operation timed out")
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"the connection to huggingface.co failed while downloading {REPO} "
        "(ReadTimeout: The read operation timed out): run again to resume")


def test_gated_repo_without_a_token(monkeypatch, tmp_path, no_token):
    error = http_error(401, FILE, "GatedRepo", f"Access to model {REPO} is restricted. Please log in.")
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"{REPO} is gated: accept its licence on https://huggingface.co/{REPO}, "
        "then set HF_TOKEN to a token of that account")


def test_gated_repo_on_modal_names_the_secret(monkeypatch, tmp_path, no_token):
    error = http_error(401, FILE, "GatedRepo", f"Access to model {REPO} is restricted. Please log in.")
    hub_raises(monkeypatch, error)
    config = {"base_model": REPO, "cache_dir": str(tmp_path), "model_spec": {"build": None},
              "backend": {"name": "modal", "secrets": {"huggingface": "hf-prod"}}}
    with pytest.raises(hub.DownloadFailed) as failed:
        prepare.prepare(config)
    assert str(failed.value) == (
        f"{REPO} is gated: accept its licence on https://huggingface.co/{REPO}, then set HF_TOKEN in the "
        "Modal Secret 'hf-prod' (backend.secrets.huggingface) to a token of that account")


def test_gated_repo_on_modal_without_a_secret_says_how_to_add_one(monkeypatch, tmp_path, no_token):
    """Public models need no Secret, so none is attached by default: a gated one says how to add it."""
    error = http_error(401, FILE, "GatedRepo", f"Access to model {REPO} is restricted. Please log in.")
    hub_raises(monkeypatch, error)
    config = {"base_model": REPO, "cache_dir": str(tmp_path), "model_spec": {"build": None},
              "backend": {"name": "modal", "secrets": {"huggingface": None, "wandb": "wandb"}}}
    with pytest.raises(hub.DownloadFailed) as failed:
        prepare.prepare(config)
    assert str(failed.value) == (
        f"{REPO} is gated: accept its licence on https://huggingface.co/{REPO}, then set HF_TOKEN in a Modal "
        "Secret (none is attached: `modal secret create huggingface HF_TOKEN=hf_...`, then run with "
        "backend.secrets.huggingface=huggingface) to a token of that account")


def test_gated_repo_with_a_token_lacking_access(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_without_access")
    error = http_error(403, FILE, "GatedRepo", f"Access to model {REPO} is restricted and you are not in the "
                                               "authorized list.")
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"{REPO} is gated and the account of HF_TOKEN has no access: accept its licence on "
        f"https://huggingface.co/{REPO} with that account (some repos also wait for the authors' approval)")


def test_repository_not_found(monkeypatch, tmp_path):
    repo = "mistralai/Mistral-7B-v0.9"
    error = http_error(401, f"https://huggingface.co/api/models/{repo}/revision/main", "RepoNotFound")
    assert failing_download(monkeypatch, tmp_path, error, repo=repo) == (
        f"no model '{repo}' on the Hugging Face hub: check the name (base_model); "
        "a private repo needs HF_TOKEN set to a token with access")


def test_revision_not_found(monkeypatch, tmp_path):
    error = http_error(404, f"https://huggingface.co/api/models/{REPO}/revision/v9", "RevisionNotFound")
    assert failing_download(monkeypatch, tmp_path, error) == (
        f"{REPO} has no such revision on the Hugging Face hub: check the branch, tag or commit")


@pytest.mark.parametrize("status, message, expected", [
    (503, None, f"the Hugging Face hub answered HTTP 503 for {REPO}: Server error '503 Service Unavailable' "
                f"for url '{API}' (try again later)"),
    (401, "Invalid credentials in Authorization header",
     f"the Hugging Face hub answered HTTP 401 for {REPO}: Invalid credentials in Authorization header "
     "(HF_TOKEN was rejected: replace it with a valid token)"),
    (403, "This fine-grained token cannot read this repo",
     f"the Hugging Face hub answered HTTP 403 for {REPO}: This fine-grained token cannot read this repo "
     "(the token in HF_TOKEN needs read access to this repo)"),
])
def test_other_http_errors_give_the_status_and_the_first_line(monkeypatch, tmp_path, status, message, expected):
    assert failing_download(monkeypatch, tmp_path, http_error(status, API, message=message)) == expected


def test_a_full_disk_and_anything_else_are_one_line_too(monkeypatch, tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    assert failing_download(monkeypatch, tmp_path, full) == (
        f"cannot write {REPO} into the model cache ({tmp_path / 'hub'}): No space left on device")
    odd = RuntimeError("etag is empty due to uncovered problems\nmore")
    assert failing_download(monkeypatch, tmp_path, odd) == (
        f"downloading {REPO} failed: RuntimeError: etag is empty due to uncovered problems")


def test_real_download_offline_and_with_a_bad_name(monkeypatch, tmp_path):
    # no fakes: huggingface_hub's own snapshot_download, offline as the suite is
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.DownloadFailed, match="forbids downloading it: unset HF_HUB_OFFLINE"):
        hub.download("EleutherAI/pythia-14m", tmp_path)
    with pytest.raises(hub.DownloadFailed) as failed:
        hub.download("/nonexistent/model-a", tmp_path)
    assert str(failed.value).startswith("base_model '/nonexistent/model-a' is neither a local folder nor a hub "
                                        "repo id: ")


def test_the_cli_ends_an_offline_download_with_one_line(cli, tmp_path):
    """The real CLI, a real hub model, HF_HUB_OFFLINE=1 (set for the suite) and an empty cache: one line, exit 2,
    before any run folder (the prepare stage's own one line, when it fails anyway: the tests above)."""
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    result = cli("model=pythia", "gpu=cpu", f"runs_root={runs}", f"cache_dir={cache}",
                 env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    reason = (f"EleutherAI/pythia-1.4b-deduped is not in the model cache ({cache / 'hub'}) and HF_HUB_OFFLINE=1 "
              "forbids downloading it: unset HF_HUB_OFFLINE to download it once, or set base_model to a local folder")
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {reason}"), result.stderr[-2000:]
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith("_")]
    assert result.stdout == ""


def test_on_modal_the_stage_function_raises_the_one_line(plan, tmp_path, monkeypatch):
    """run_stage_in_container, in-process over a real run folder: report_results prints this error."""
    import modal  # noqa: F401 - a hard dependency
    from runner.backends import modal_app
    from runner.runfolder import RunFolder

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    run_id = "20260101-000000-pythia-lora-abcd"
    RunFolder.create(plan("model=pythia", "gpu=cpu", f"runs_root={runs}", f"cache_dir={cache}").for_run(run_id))
    monkeypatch.setenv("RUNNER_MODAL_RUNS_DIR", str(runs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as failed:
        modal_app.run_stage_in_container({"run_id": run_id, "skipped": {}}, "prepare")
    assert str(failed.value) == (
        f"prepare: EleutherAI/pythia-1.4b-deduped is not in the model cache ({cache / 'hub'}) and HF_HUB_OFFLINE=1 "
        "forbids downloading it: unset HF_HUB_OFFLINE to download it once, or set base_model to a local folder")


def test_an_offline_hub_model_is_refused_before_a_run_only_when_prepare_would_download_it(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = {"base_model": REPO, "cache_dir": str(tmp_path), "model_spec": {"build": None}}
    with pytest.raises(hub.DownloadFailed, match=f"^{REPO} is not in the model cache .* HF_HUB_OFFLINE=1 forbids"):
        hub.check_reachable(config)
    hub.check_reachable({**config, "stages": {"prepare": False}})   # nothing to download
    hub.check_reachable({**config, "model_spec": {"build": "tiny"}})
    snapshot = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    hub.check_reachable(config)   # in the model cache: the prepare stage finds it offline
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.check_reachable({**config, "cache_dir": str(tmp_path / "empty")})   # online: the prepare stage downloads it
