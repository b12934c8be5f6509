"""Generation engines: vLLM only where it can run, else transformers; the same prompts and stops either way."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.evals import generate
from runner.evals.generate import GenerationSettings, ModelRef, TransformersEngine, choose_engine, cut_at_stop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_eval_stage import build_tiny  # noqa: E402

PROMPTS = ["[INST] How many cars are there? [/INST] ", "[INST] List the names [/INST] ", "SELECT"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-llama")


def availability(monkeypatch, vllm: bool, gpu: bool):
    monkeypatch.setattr(generate, "vllm_available", lambda: vllm)
    monkeypatch.setattr(generate, "gpu_available", lambda: gpu)


@pytest.mark.parametrize("vllm, gpu, engine", [
    (False, False, "transformers"),   # this machine: no vllm, no GPU
    (True, False, "transformers"),    # vllm installed but no GPU
    (False, True, "transformers"),    # a GPU without vllm
    (True, True, "vllm"),
])
def test_auto_picks_vllm_only_when_installed_and_a_gpu_is_present(monkeypatch, vllm, gpu, engine):
    availability(monkeypatch, vllm, gpu)
    assert choose_engine("auto") == engine
    assert choose_engine("transformers") == "transformers"


def test_auto_leaves_vllm_out_when_its_start_would_cost_more_than_it_saves(monkeypatch):
    availability(monkeypatch, True, True)
    assert choose_engine("auto", prompts=200) == "transformers"
    assert choose_engine("auto", prompts=generate.VLLM_MIN_PROMPTS) == "vllm"
    assert choose_engine("vllm", prompts=200) == "vllm"   # asked for by name: always


def test_asking_for_vllm_where_it_cannot_run_is_a_user_error(monkeypatch):
    availability(monkeypatch, False, True)
    with pytest.raises(UserError, match="vllm is not installed"):
        choose_engine("vllm")
    availability(monkeypatch, True, False)
    with pytest.raises(UserError, match="no GPU"):
        choose_engine("vllm")
    with pytest.raises(UserError, match="unknown eval engine 'tgi'"):
        choose_engine("tgi")


def test_this_machine_really_falls_back():
    assert generate.vllm_available() is False   # not installed here
    assert choose_engine("auto") == "transformers"


def test_importing_the_engine_module_stays_torch_free():
    code = "import sys, runner.evals.generate, runner.stages.evaluate, runner.infer; " \
           "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text, cut", [
    ("[SQL] SELECT 1 [/SQL] and more [/SQL]", "[SQL] SELECT 1 [/SQL]"),
    ("no stop here", "no stop here"),
    ("a ### b [/SQL]", "a ###"),
])
def test_cut_at_stop_keeps_the_earliest_stop_string(text, cut):
    assert cut_at_stop(text, ("[/SQL]", "###")) == cut


def test_single_token_stops_end_like_eos_and_longer_ones_use_stop_strings(tiny_model):
    model, tokenizer = generate.load_model(ModelRef(str(tiny_model)))
    engine = TransformersEngine(model, tokenizer, GenerationSettings(stop=("[/SQL]", "END OF ANSWER")))
    assert tokenizer.convert_tokens_to_ids("[/SQL]") in engine.eos_ids and tokenizer.eos_token_id in engine.eos_ids
    assert engine.stop_strings == ["END OF ANSWER"]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tiny_model):
    model, tokenizer = generate.load_model(ModelRef(str(tiny_model)))
    ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    one = TransformersEngine(model, tokenizer, GenerationSettings(max_new_tokens=6, batch_size=1)).generate(ids)
    batched = TransformersEngine(model, tokenizer, GenerationSettings(max_new_tokens=6, batch_size=3)).generate(ids)
    assert batched == one and len(one) == 3 and all(isinstance(t, str) and t for t in one)


VLLM_API = json.loads((Path(__file__).parent / "data" / "vllm-python-api.json").read_text())


def _refuse_unknown(what: str, names, known: list[str]) -> None:
    """A TypeError, as the real vLLM raises, for a name the locked vLLM does not have
    (tests/data/vllm-python-api.json, from its wheel: bench/record_vllm_api.py)."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise TypeError(f"{what} got unexpected keyword argument(s) {unknown} (vLLM {VLLM_API['vllm']})")


def fake_vllm(monkeypatch, completions: list[str], tuned: list[str] | None = None) -> dict:
    """A stand-in `vllm` package that records what the engine sends it, and refuses option and field names
    that the locked vLLM does not know. It answers with `completions`, or with `tuned` (when given) for the
    tuned weights: a request with the LoRA, or an engine opened on a merged model."""
    seen: dict = {}

    seen["engines"], seen["calls"] = [], []

    class LLM:
        def __init__(self, **options):
            _refuse_unknown("LLM()", options, VLLM_API["LLM"])
            seen["options"] = self.options = options
            seen["engines"].append(options)

        def generate(self, prompts, params, **options):
            _refuse_unknown("LLM.generate()", options, VLLM_API["LLM.generate"][2:])
            seen.update(prompts=prompts, params=params, lora=options.get("lora_request"))
            seen["calls"].append(options.get("lora_request"))
            weights_tuned = options.get("lora_request") is not None or Path(self.options["model"]).name == "merged"
            answers = tuned if tuned and weights_tuned else completions
            texts = [answers[i % len(answers)] for i in range(len(prompts))]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t, token_ids=list(range(len(t.split()))))])
                    for t in texts]

    class SamplingParams:
        def __init__(self, **fields):
            _refuse_unknown("SamplingParams()", fields, VLLM_API["SamplingParams"])
            self.__dict__.update(fields)

    def tokens_prompt(**keys):
        _refuse_unknown("TokensPrompt()", keys, VLLM_API["TokensPrompt"])
        return dict(keys)

    def lora_request(*args, **fields):
        order = VLLM_API["LoRARequest"]
        if len(args) > len(order):
            raise TypeError(f"LoRARequest() takes at most {len(order)} positional arguments")
        _refuse_unknown("LoRARequest()", fields, order)
        named = {**dict(zip(order, args)), **fields}
        return {"name": named["lora_name"], "id": named["lora_int_id"], "path": named.get("lora_path")}

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = tokens_prompt
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lora_request
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    return seen


def test_the_fake_vllm_refuses_names_the_locked_vllm_does_not_have(monkeypatch):
    fake_vllm(monkeypatch, ["x"])
    import vllm
    from vllm.lora.request import LoRARequest

    vllm.LLM(model="m", enable_lora=True, max_lora_rank=16, gpu_memory_utilization=0.9)   # EngineArgs via **kwargs
    with pytest.raises(TypeError, match="max_lora_ranks"):
        vllm.LLM(model="m", max_lora_ranks=16)
    with pytest.raises(TypeError, match="stop_strings"):
        vllm.SamplingParams(temperature=0.0, stop_strings=["x"])
    assert LoRARequest("tuned", 1, "/a")["path"] == "/a"
    assert VLLM_API["vllm"] in open(ROOT / "runner" / "stack" / "gpu.lock").read().split("vllm==")[1][:10]


def test_vllm_engine_gets_the_same_prompt_ids_greedy_and_the_same_stops(monkeypatch, tiny_model):
    seen = fake_vllm(monkeypatch, ["[SQL] SELECT 1 [/SQL]", "[SQL] SELECT 2 [/SQL] extra [/SQL]"])
    settings = GenerationSettings(max_new_tokens=12, stop=("[/SQL]",))
    engine = generate.open_engine("vllm", ModelRef(str(tiny_model)), settings)
    ids = [engine.tokenizer(p)["input_ids"] for p in PROMPTS[:2]]
    assert engine.generate(ids) == ["[SQL] SELECT 1 [/SQL]", "[SQL] SELECT 2 [/SQL]"]
    assert [p["prompt_token_ids"] for p in seen["prompts"]] == ids
    assert engine.generated_tokens == 4 + 6   # what vLLM decoded, past the stop string too
    params = seen["params"]
    assert (params.temperature, params.max_tokens, params.stop, params.include_stop_str_in_output) == (
        0.0, 12, ["[/SQL]"], True)
    assert seen["options"]["model"] == str(tiny_model) and seen["lora"] is None


def test_a_row_decoded_up_to_its_first_eos_counts_those_tokens_only():
    from runner.evals.generate import _decoded_length

    assert _decoded_length([5, 6, 2, 2, 2], [2]) == 3          # EOS, then padding (pad = EOS)
    assert _decoded_length([5, 6, 7], [2]) == 3                # hit max_new_tokens
    assert _decoded_length([9, 5, 6], [2, 9]) == 1             # a stop token that is one id stops like EOS


@pytest.mark.parametrize("tuned, engines", [("adapter", 1), ("merged", 2)])
def test_vllm_eval_starts_one_engine_when_tuned_is_base_plus_adapter(monkeypatch, tiny_model, plan, tmp_path,
                                                                     tuned, engines):
    """Base + adapter: one engine with the LoRA enabled answers for both (base requests without it), after
    both models' losses. A merged copy is other weights: an engine each."""
    from runner.stages import evaluate
    from test_eval_stage import QUICK, make_run

    seen = fake_vllm(monkeypatch, ["[SQL] SELECT 1 [/SQL]"], tuned=["[SQL] SELECT name FROM t [/SQL]"])
    availability(monkeypatch, vllm=True, gpu=True)
    folder = make_run(plan, tmp_path, tiny_model, eval_settings={**QUICK, "limit": 3, "engine": "vllm"}, tuned=tuned)
    record = evaluate.evaluate_run(folder.path, folder.composed())
    assert record["engine"] == "vllm" and len(seen["engines"]) == engines
    if tuned == "adapter":
        assert seen["engines"][0]["enable_lora"] is True
        assert seen["calls"][0] is None and seen["calls"][1]["path"] == str(folder.outputs)   # base, then tuned
    # each model's own answers, each scored on its own (the fake's token ids: one per word)
    assert (record["base"]["generated_tokens"], record["tuned"]["generated_tokens"]) == (3 * 4, 3 * 6)
    predictions = {v: [json.loads(line)["prediction"] for line in
                       (folder.path / "eval" / f"predictions-{v}.jsonl").read_text().splitlines()] for v in ("base", "tuned")}
    assert predictions == {"base": ["[SQL] SELECT 1 [/SQL]"] * 3, "tuned": ["[SQL] SELECT name FROM t [/SQL]"] * 3}
    assert record["tuned"]["eval_loss"] > 0


def test_batch_size_null_fits_the_batch_to_the_gpus_free_memory(monkeypatch):
    import torch
    from transformers import LlamaConfig

    llama7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=32, vocab_size=32000)
    on_gpu = types.SimpleNamespace(device=torch.device("cuda", 0), config=llama7b)
    free = {"bytes": 125 * 2**30}   # an H200 with a 7B loaded
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 141 * 2**30))
    # the default 7B job's 200 prompts (up to ~250 tokens) + 64 new tokens: one generate batch
    assert generate.rows_that_fit(on_gpu, 250 + 64, limit=200) == 200
    # a loss batch also holds the logits of every token: fewer rows of the same length fit
    assert generate.rows_that_fit(on_gpu, 314, limit=10_000, logits=True) < generate.rows_that_fit(on_gpu, 314, limit=10_000)
    free["bytes"] = 4 * 2**30   # a small card: smaller batches, never none
    assert 1 <= generate.rows_that_fit(on_gpu, 314, limit=200) < 20
    assert generate.rows_that_fit(on_gpu, 10**7, limit=200) == 1
    on_cpu = types.SimpleNamespace(device=torch.device("cpu"), config=llama7b)
    assert generate.rows_that_fit(on_cpu, 314, limit=200) == generate.CPU_ROWS
    assert generate.rows_that_fit(on_cpu, 314, limit=3) == 3
