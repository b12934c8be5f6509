"""gpu=auto (runner/gpu_choice.py): the cheapest gpu option that fits the job and meets its deadline within
its budget, chosen from the memory model, the measured (or scaled) speeds and the dated price table."""

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from fakes.modal_server import modal_server  # noqa: F401 - the fixture
from runner.backends.modal_settings import describe_stages
from runner.compose import expand_overrides, compose_job
from runner.errors import UserError
from runner.gpu_choice import choose
from runner.gpu_tables import prices, speed, usd_per_gpu_hour
from runner.settings import STAGES

# Llama-3-70B's figures (its config.json), over the llama3 group's 8B ones
LLAMA_70B = ["model=llama3", "model_spec.params_b=70.6", "model_spec.active_params_b=70.6", "model_spec.hidden_size=8192",
             "model_spec.num_layers=80", "model_spec.intermediate_size=28672", "model_spec.num_heads=64"]


@pytest.fixture(scope="module")
def chose(large_data):
    """gpu=auto's choice for a job on Modal (`large=True`: 21 000 records, enough for the card's speed to count)."""
    def _chose(*overrides, large=False):
        data = [f"dataset.path={large_data}"] if large else []
        return choose(compose_job(expand_overrides(["gpu=auto", "backend=modal", *data, *overrides], False)[0]))[0]
    return _chose


# ---- the golden table: (model, adapter, sequence length, data, deadline/budget) → the option chosen ----------
GOLDEN = [
    # a 7B LoRA on 21 000 records fits the 24 GB L4 (ties with the T4 to the cent; the L4 is faster)
    (("model=llama2",), True, "l4"),
    # a 7B full fine-tune with ZeRO-3 needs its state sharded across cards: the cheapest pair
    (("model=llama2", "adapter=none", "deepspeed=zero3"), False, "a100x2"),
    # a 70B QLoRA: ~50 GiB of 4-bit weights, adapter and activations on one 80 GB card (the shipped data's
    # one 4 096-token row a step: the H100 finishes sooner and costs a cent less than the A100-80GB)
    ((*LLAMA_70B, "adapter=qlora"), False, "h100"),
    # Mixtral's 46.7B weights in 16 bit with LoRA fit only the 141 GB H200 (DDP copies them to every GPU)
    (("model=mixtral",), False, "h200"),
    # the L4 takes ~16 min: a 12-minute deadline takes the next cheapest that is faster
    (("model=llama2", "deadline_h=0.2"), True, "l40s"),
    # longer rows need more memory per row: the same 7B LoRA at 4 096 tokens a row
    (("model=llama2", "sequence_len=4096"), True, "l4"),
]


@pytest.mark.parametrize("overrides,large,option", GOLDEN, ids=[" ".join(g[0][:3]) for g in GOLDEN])
def test_golden_table(chose, overrides, large, option):
    choice = chose(*overrides, large=large)
    assert choice.chosen == option, "\n".join(choice.lines())
    chosen = choice.candidates[0]
    assert chosen.option == option and chosen.rejected is None and chosen.need_gib <= chosen.card_gib
    # every eligible option costs at least as much (to the cent), and every rejected one says why
    eligible = [c for c in choice.candidates if c.rejected is None]
    assert all(round(c.cost_usd, 2) >= round(chosen.cost_usd, 2) for c in eligible)
    assert all(c.rejected for c in choice.candidates[len(eligible):])


def test_a_deadline_rejects_the_slower_cheaper_options(chose):
    rushed = chose("model=llama2", "deadline_h=0.2", large=True)   # without the deadline: l4 (the golden table)
    rows = {c.option: c for c in rushed.candidates}
    assert rows["l4"].rejected == "misses deadline_h=0.2" and rows["l4"].hours > 0.2
    assert rows[rushed.chosen].hours <= 0.2 and rows[rushed.chosen].cost_usd > rows["l4"].cost_usd


# ---- goal 1's errors: one line naming the nearest option and what would make it work --------------------------
def test_nothing_fits_names_the_nearest_option_and_qlora(chose):
    with pytest.raises(UserError) as e:
        chose("model=mixtral", "gpu.candidates=[l40s,a100]")
    message = str(e.value)
    assert "\n" not in message and "the nearest, a100, does not fit: needs ~" in message
    assert "adapter=qlora" in message and "80 GiB" not in message and "of its 80" in message


def test_a_full_fine_tune_that_fits_nowhere_is_told_about_zero3(chose):
    with pytest.raises(UserError, match=r"the nearest, .*deepspeed=zero3"):
        chose("model=llama2", "adapter=none", "gpu.candidates=[a10g,l40s]")


def test_a_deadline_nothing_meets_names_the_fastest_and_a_deadline_that_works(chose):
    with pytest.raises(UserError) as e:
        chose("model=llama2", "deadline_h=0.05", large=True)
    message = str(e.value)
    assert re.search(r"no option that fits finishes within deadline_h=0.05: the fastest, \S+, takes ~\d+ min", message)
    longer = float(re.search(r"set deadline_h=([\d.]+) or more", message).group(1))
    assert chose("model=llama2", f"deadline_h={longer}", large=True).chosen   # the advice works


def test_a_budget_that_cannot_be_met_names_the_cheapest_and_its_cost(chose):
    with pytest.raises(UserError) as e:
        chose("model=llama2", "budget_usd=0.1", large=True)
    message = str(e.value)
    assert "nothing costs at most budget_usd=0.1: the cheapest, l4, costs ~$0.2" in message   # (tied t4 is slower)
    more = float(re.search(r"set budget_usd=([\d.]+) or more", message).group(1))
    assert chose("model=llama2", f"budget_usd={more}", large=True).chosen == "l4"
    with pytest.raises(UserError, match="within deadline_h=0.2 costs at most budget_usd=0.25: .*a longer deadline_h"):
        chose("model=llama2", "deadline_h=0.2", "budget_usd=0.25", large=True)


def test_unknown_candidates_get_a_suggestion(chose):
    with pytest.raises(UserError, match="unknown gpu.candidates option 'h1000' \\(did you mean 'h100'"):
        chose("gpu.candidates=[h1000]")
    with pytest.raises(UserError, match="unknown gpu.candidates option 'cpu'"):
        chose("gpu.candidates=[cpu]")


def test_the_command_line_exits_2_with_one_line_and_creates_nothing(tmp_path):
    from conftest import run_cli

    result = run_cli("model=mixtral", "gpu=auto", "gpu.candidates=[l40s]", f"runs_root={tmp_path}/runs", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("error: gpu=auto: no gpu option fits this job: the nearest, l40s")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


# ---- goal 2: the dry run's table and job.json -----------------------------------------------------------------
def test_the_dry_run_prints_the_ranked_table_and_job_json_records_the_choice(plan):
    from runner.report import dry_run_text
    from runner.runfolder import records

    job = plan("model=mistral", "adapter=qlora", "gpu=auto", "backend=modal", "deadline_h=0.1")
    choice = job.composed.gpu_choice
    assert job.choices["gpu"] == choice.chosen and job.overrides[2] == "gpu=auto"
    chosen = choice.candidates[0]
    assert job.config["gpu"]["modal"] == chosen.modal and job.config["micro_batch_size"] == chosen.micro_batch
    assert job.compute.est_hours == chosen.hours and job.compute.est_cost_usd == chosen.cost_usd
    text = dry_run_text(job, 1, 1)
    assert f"# gpu=auto chose {choice.chosen} (deadline_h=0.1; Modal fallbacks: {chosen.modal}" in text
    rows = [line for line in text.splitlines() if re.match(r"#   (?!option )[a-z0-9-]+ ", line)]
    assert len(rows) == len(choice.candidates) and rows[0].split()[1] == choice.chosen and rows[0].endswith("chosen")
    assert all(("measured" in r) != ("scaled" in r) for r in rows)
    assert any("misses deadline_h=0.1" in r for r in rows)
    recorded = records(job)["job.json"]["gpu_choice"]
    assert json.loads(json.dumps(recorded)) == recorded and recorded["chosen"] == choice.chosen
    assert [c["option"] for c in recorded["candidates"]] == [c.option for c in choice.candidates]


# ---- goal 3: the speed model and the one price table --------------------------------------------------------------
def test_measured_speeds_are_the_benchmarks_figures():
    h200 = json.loads((ROOT / "bench" / "results-h200.json").read_text())["recipes"]
    h100 = json.loads((ROOT / "bench" / "results.json").read_text())["recipes"]
    table = speed()["tokens_per_s"]
    assert table["H200"] == {"lora": h200["default"]["tokens_per_s"], "qlora": h200["qlora"]["tokens_per_s"],
                             "full": h200["full"]["tokens_per_s"]}
    assert table["H100"] == {"lora": h100["default"]["tokens_per_s"]}
    ddp2 = h200["ddp2"]["tokens_per_s"] / (2 * h200["default"]["tokens_per_s"])
    assert speed()["multi_gpu_efficiency"] == pytest.approx(ddp2, abs=0.001)


def test_speed_is_measured_where_benchmarked_and_scaled_elsewhere():
    from runner.gpu_speed import estimate

    peaks = {"H100": 989.0, "H200": 989.0, "L40S": 362.0}
    seven_b = {"model_spec": {"active_params_b": 6.74, "num_layers": 32, "hidden_size": 4096}, "adapter": "lora"}
    h100 = estimate(seven_b, {"modal": "H100"}, 4096, peaks)
    assert (h100.source, h100.tokens_per_s) == ("measured", pytest.approx(speed()["tokens_per_s"]["H100"]["lora"]))
    l40s = estimate(seven_b, {"modal": "L40S"}, 4096, peaks)   # by bf16 peak from the H100 (nearest in bandwidth)
    assert l40s.source == "scaled" and l40s.tokens_per_s == pytest.approx(h100.tokens_per_s * 362 / 989)
    qlora = estimate({**seven_b, "load_in_4bit": True}, {"modal": "H100"}, 4096, peaks)   # the H200's qlora/lora
    h200 = speed()["tokens_per_s"]["H200"]
    assert qlora.source == "scaled" and qlora.tokens_per_s == pytest.approx(h100.tokens_per_s * h200["qlora"] / h200["lora"])
    pair = estimate(seven_b, {"modal": "H100:2"}, 4096, peaks)
    assert pair.tokens_per_s == pytest.approx(2 * speed()["multi_gpu_efficiency"] * h100.tokens_per_s)
    small = {"model_spec": {"active_params_b": 0.135, "num_layers": 30, "hidden_size": 576}, "adapter": "lora"}
    ratio = estimate(small, {"modal": "L40S"}, 2048, peaks).tokens_per_s / estimate(small, {"modal": "H100"}, 2048, peaks).tokens_per_s
    assert ratio == pytest.approx(0.864 / 3.35)   # a small model: by memory bandwidth
    # a bigger model trains fewer tokens a second on the same card, by its FLOPs a token
    assert estimate({**seven_b, "model_spec": {**seven_b["model_spec"], "active_params_b": 13.5}},
                    {"modal": "H100"}, 4096, peaks).tokens_per_s < 0.6 * h100.tokens_per_s


def test_gpu_options_price_from_the_one_dated_table(plan):
    table = prices()
    assert table["date"] and table["source"].startswith("https://modal.com")
    for path in sorted((ROOT / "conf" / "gpu").glob("*.yaml")):
        gpu = yaml.safe_load(path.read_text())["gpu"]
        if gpu.get("modal"):
            gpu_type = gpu["modal"].split(":")[0]
            assert gpu["usd_per_hour"] == f"${{gpu_price:{gpu_type}}}", path.name
    assert plan("gpu=h100x2", "model=llama2").config["gpu"]["usd_per_hour"] == usd_per_gpu_hour("H100") == \
        pytest.approx(table["usd_per_second"]["H100"] * 3600)
    from runner.backends.modal_bounds import gpu_prices

    assert gpu_prices()["L40S"] == usd_per_gpu_hour("L40S")


def test_prices_are_overridable_and_change_the_choice(chose):
    # the same job takes the L4 at Modal's prices (the golden table)
    assert chose("model=llama2", "+gpu.prices.L40S=0.5", large=True).chosen == "l40s"


def test_a_local_gpu_is_a_candidate_at_no_cost(chose, monkeypatch):
    from runner.backends import placement

    monkeypatch.setattr(placement, "local_gpus", lambda: (placement.LocalGpu(0, "NVIDIA L40S", 44.4),))
    choice = choose(compose_job(expand_overrides(["gpu=auto", "model=llama2"], False)[0]))[0]
    row = choice.candidates[0]
    assert (choice.chosen, row.cost_usd, row.where) == ("l40s", 0.0, "this machine")
    assert "chosen (this machine)" in "\n".join(choice.lines())
    # backend=local: only the cards this machine has
    local = choose(compose_job(expand_overrides(["gpu=auto", "model=llama2", "backend=local"], False)[0]))[0]
    assert local.chosen == "l40s" and all(c.rejected.startswith("not on this machine") or not c.fits
                                          for c in local.candidates[1:])


# ---- goal 4: Modal's GPU fallback list --------------------------------------------------------------------------
def test_the_fallbacks_are_the_next_options_meeting_the_deadline_that_run_the_same_job(plan):
    from runner.backends import modal_app, modal_launcher

    job = plan("model=mistral", "adapter=qlora", "gpu=auto", "backend=modal", "deadline_h=0.1")
    choice = job.composed.gpu_choice
    rows = {c.option: c for c in choice.candidates}
    chosen = rows[choice.chosen]
    assert choice.fallbacks[0] == chosen.modal and len(choice.fallbacks) > 1
    for c in choice.candidates:
        same_job = c.rejected is None and c.card_gib >= chosen.need_gib and c.modal.partition(":")[2] == chosen.modal.partition(":")[2]
        assert (c.modal in choice.fallbacks) == same_job or c.modal == chosen.modal, c
    # the job carries them (gpu.fallbacks) to every stage on its GPUs; the dry run says so
    assert job.config["gpu"]["fallbacks"] == choice.fallbacks[1:]
    request = modal_launcher.job_request(job, 1, "run-1", modal_app.runs_dir(), modal_app.pretrained_dir())
    for stage in ("train", "eval"):
        assert [request["options"][stage]["gpu"], *request["options"][stage]["fallbacks"]] == choice.fallbacks
    assert request["options"]["merge"]["fallbacks"] == []
    assert f"train {' or '.join(choice.fallbacks)}, " in describe_stages(job.config)


def test_the_fallback_list_reaches_modal_as_the_gpu_stages_declared_list(plan, modal_server, monkeypatch):  # noqa: F811
    """Modal 1.3 takes a GPU list where a class is declared (Cls.with_options takes one GPU): the launch declares
    the train and eval classes with its jobs' list, and their calls then name no GPU of their own; jobs that
    want different lists each ask for their first GPU."""
    import importlib

    from runner.backends import modal_app, modal_launcher

    auto = plan("model=mistral", "adapter=qlora", "gpu=auto", "backend=modal", "deadline_h=0.1")
    gpus = auto.composed.gpu_choice.fallbacks
    settings = modal_launcher.sweep_settings([auto, auto])
    assert settings.gpu_fallbacks == tuple(gpus)
    monkeypatch.setenv("RUNNER_MODAL_SETTINGS", settings.to_json())
    app = importlib.reload(modal_app)
    try:
        request = modal_launcher.job_request(auto, 1, "run-1", app.runs_dir(), app.pretrained_dir())
        with modal_server.intercept() as ctx, app.app.run():
            for stage in STAGES:
                app.stage_instance(request, stage).run.hydrate()
        created = {r.function_data.ranked_functions[0].function.function_name if r.HasField("function_data")
                   else r.function.function_name: r for r in ctx.get_requests("FunctionCreate")}
        for name in ("Train.*", "Eval.*"):
            ranked = sorted(created[name].function_data.ranked_functions, key=lambda r: r.rank)
            declared = [(r.function.resources.gpu_config.gpu_type, r.function.resources.gpu_config.count) for r in ranked]
            assert declared == [(g.partition(":")[0], int(g.partition(":")[2] or 1)) for g in gpus], name
        binds = dict(zip(STAGES, (r.function_options for r in ctx.get_requests("FunctionBindParams"))))
        for stage in ("train", "eval"):   # no GPU of the call's own: the declared list applies
            assert not binds[stage].resources.gpu_config.gpu_type, stage
            assert binds[stage].timeout_secs == request["options"][stage]["timeout_s"]
        assert binds["merge"].resources.milli_cpu == 8000
    finally:
        monkeypatch.delenv("RUNNER_MODAL_SETTINGS")
        importlib.reload(modal_app)
    # jobs that want different lists: none declared, each call names its own first GPU
    other = plan("model=mistral", "adapter=qlora", "gpu=h100", "backend=modal", "gpu.fallbacks=[A100-80GB]")
    assert modal_launcher.sweep_settings([auto, other]).gpu_fallbacks == ()
    assert modal_launcher.sweep_settings([other]).gpu_fallbacks == ("H100", "A100-80GB")


@pytest.mark.parametrize("fallbacks,message", [
    ("[H100:2]", "gpu.fallbacks: H100:2 has 2 GPU(s) and the job trains on 1 (A100-80GB): a stand-in must have as many (e.g. H100)"),
    ("[A100-90GB]", "gpu.fallbacks: unknown Modal GPU 'A100-90GB'"),
])
def test_a_fallback_list_that_cannot_stand_in_is_one_line(cli, fallbacks, message):
    result = cli("backend=modal", "gpu=a100", f"gpu.fallbacks={fallbacks}", "dry_run=true")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_stage_records_the_card_it_got_and_the_cost_is_that_card_s(tmp_path, monkeypatch):
    """In the container the stage reads nvidia-smi, names which of its GPUs Modal gave it; the run's cost
    prices that card (conf/gpu_prices.yaml), not the one asked for first."""
    from runner.backends import placement
    from runner.backends.modal_records import gpu_usage, stage_gpus, write_modal_record
    from runner.gpu_tables import usd_per_gpu_hour
    from runner.records import write_json
    from runner.runfolder import RunFolder

    a100 = placement.LocalGpu(0, "NVIDIA A100-SXM4-80GB", 79.2)
    assert placement.modal_card((a100,), ["H100", "A100-80GB"]) == "A100-80GB"
    assert placement.modal_card((a100,), ["H100", "A100-40GB"]) == "A100-40GB"   # a bigger card serves
    assert placement.modal_card((a100, a100), ["H100:2", "A100-80GB:2"]) == "A100-80GB:2"
    assert placement.modal_card((a100,), ["H100:2", "A100-80GB:2"]) is None
    assert placement.modal_card((placement.LocalGpu(0, "NVIDIA A100-SXM4-40GB", 39.4),), ["A100-80GB"]) is None

    run = tmp_path / "run"
    write_json(run / "status.json", {"state": "running", "stages": {
        "train": {"state": "succeeded", "started": "2026-12-07T01:00:00", "ended": "2026-12-07T02:00:00"},
        "eval": {"state": "succeeded", "started": "2026-12-07T02:00:00", "ended": "2026-12-07T02:30:00"}}})
    write_modal_record(run, {"usd_per_gpu_hour": 3.95, "options": {
        "train": {"gpu": "H100", "fallbacks": ["A100-80GB"]}, "eval": {"gpu": "H100", "fallbacks": ["A100-80GB"]},
        "merge": {"gpu": None}}})
    assert gpu_usage(run) == (1.5, pytest.approx(1.5 * 3.95))
    folder = RunFolder(run)
    folder.note_stage("train", gpu="A100-80GB")
    assert folder.status()["stages"]["train"]["state"] == "succeeded"
    assert stage_gpus(run) == {"train": "A100-80GB", "eval": "H100"}
    assert gpu_usage(run) == (1.5, pytest.approx(usd_per_gpu_hour("A100-80GB") + 0.5 * 3.95))


# ---- goal 5: sweeps choose per job ---------------------------------------------------------------------------------
def test_a_sweep_chooses_per_job_and_its_table_shows_each_card(large_data):
    from runner.plan import plan_jobs
    from runner.sweeps import shown_overrides

    jobs = plan_jobs(["gpu=auto", "backend=modal", "model=llama2", f"dataset.path={large_data}", "lora_r=8,256",
                      "gpu.candidates=[l4,l40s]"], multirun=True)
    choices = [job.composed.gpu_choice for job in jobs]
    assert [j.config["lora_r"] for j in jobs] == [8, 256]
    # rank 256's adapter and its Adam state (~10 GiB) no longer fit the L4 beside the 7B's weights
    assert [choice.chosen for choice in choices] == ["l4", "l40s"]
    assert next(c.rejected for c in choices[1].candidates if c.option == "l4").startswith("does not fit")
    for job, choice in zip(jobs, choices):
        assert job.choices["gpu"] == choice.chosen
        shown = shown_overrides({"overrides": job.overrides, "gpu_choice": choice.to_json()})
        assert f"gpu=auto:{choice.chosen}" in shown.split() and "gpu=auto" not in shown.split()


# ---- goal 6: after a run, the prediction beside what the trainer measured -----------------------------------------
def test_a_run_records_its_prediction_beside_the_trainers_figures_and_runs_show_prints_both(plan, tmp_path):
    from runner import pipeline
    from runner.runfolder import open_run
    from runner.runs import show_run

    job = plan("model=mistral", "adapter=qlora", "gpu=auto", "backend=modal", "deadline_h=0.1", f"runs_root={tmp_path}")
    chosen = job.composed.gpu_choice.candidates[0]
    job, folder = open_run(job)
    records = [{"loss": 1.2, "memory/max_allocated (GiB)": 10.5, "tokens/total": 1000.0, "wall_s": 3.0},
               {"loss": 0.8, "memory/max_allocated (GiB)": 11.0, "tokens/total": 200000.0, "wall_s": 9.0},
               {"train_runtime": 100.0, "train_loss": 1.0, "wall_s": 10.0}]
    pipeline._keep_train_records(folder, records)
    recorded = folder.metrics()["prediction"]
    assert recorded["option"] == chosen.option and recorded["speed"] == chosen.speed
    assert recorded["train_s"] == {"predicted": pytest.approx((chosen.hours - 5 / 60) * 3600, abs=0.1), "measured": 100.0}
    assert recorded["peak_gib"] == {"predicted": chosen.need_gib, "measured": 11.0}
    assert recorded["tokens_per_s"] == {"predicted": chosen.tokens_per_s, "measured": 2000.0}
    line = next(l for l in show_run(folder).splitlines() if l.strip().startswith("predicted"))
    assert f"{chosen.option} ({chosen.speed}): train " in line and "1.7 measured" in line
    assert f"peak {chosen.need_gib:.1f} GiB predicted, 11.0 measured" in line and "2,000.0 measured" in line
    # a card the user named has no prediction to compare
    named = plan("model=mistral", "adapter=qlora", "gpu=l40s", "backend=modal", f"runs_root={tmp_path}")
    _, other = open_run(named)
    pipeline._keep_train_records(other, records)
    assert "prediction" not in other.metrics()
    # runs report: a table of predicted → measured, with the card the run got
    from runner.reportpage import report

    folder.note_stage("train", gpu="A100-80GB")   # as a container records a stand-in (modal.json names the asked)
    from runner.backends.modal_records import write_modal_record

    write_modal_record(folder.path, {"options": {"train": {"gpu": chosen.modal, "fallbacks": ["A100-80GB"]}}})
    report(tmp_path, [folder.run_id, other.run_id, "--out", str(tmp_path / "report")])
    assert "(ran on A100-80GB: a fallback)" in show_run(folder)
    page = (tmp_path / "report" / "index.html").read_text()
    section = page.split("gpu=auto: predicted → measured")[1].split("<h2>")[0]
    assert folder.run_id in section and other.run_id not in section and "A100-80GB" in section
    assert f"{chosen.need_gib:.1f} → 11.0 (×{11.0 / chosen.need_gib:.2f})" in section and "→ 2,000.0" in section


def test_the_worst_case_cost_prices_the_dearest_card_of_the_fallback_list(plan):
    from runner.backends.modal_bounds import job_bound

    alone = job_bound(plan("model=mistral", "adapter=qlora", "gpu=l40s", "backend=modal").config)
    listed = job_bound(plan("model=mistral", "adapter=qlora", "gpu=l40s", "backend=modal", "gpu.fallbacks=[H200,A100]").config)
    for stage in ("train", "eval"):
        assert alone.stages[stage].usd_per_gpu_hour == pytest.approx(usd_per_gpu_hour("L40S"))
        assert listed.stages[stage].usd_per_gpu_hour == pytest.approx(usd_per_gpu_hour("H200"))
    assert listed.gpu_cost_usd > alone.gpu_cost_usd and listed.hours == alone.hours
