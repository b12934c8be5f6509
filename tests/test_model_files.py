"""What a base model's own files say, checked when the job is planned (runner/models/modules.py and
tokenizer.py, called from runner.validate.check_model_files): an architecture axolotl can train, LoRA targets
that name the model's layers (built on the meta device), and a tokenizer with EOS, pad and a chat template
where the data needs one. Each bad input is one line (a UserError: exit 2, nothing created)."""

import json
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.models import modules

# SmolLM2-135M's config.json (tests/test_compose.py plans it too: one meta-device build serves both)
LLAMA = json.loads((Path(__file__).parent / "data" / "small-llama" / "config.json").read_text())
TOKENIZER = {"eos_token": "</s>", "pad_token": "<pad>", "chat_template": "{{ messages }}"}
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_folder(tmp_path, config=LLAMA, tokenizer=TOKENIZER, name="my-model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return folder


@pytest.fixture
def planned(plan, tmp_path):
    """plan() of a local model folder, its module names kept under a fresh cache_dir."""
    def _plan(folder, *overrides):
        return plan(f"base_model={folder}", f"cache_dir={tmp_path / 'cache'}", *overrides)

    return _plan


def test_an_architecture_transformers_cannot_train_is_one_line():
    t5 = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}
    with pytest.raises(UserError, match=r"^base_model=org/t5 is a t5 \(T5ForConditionalGeneration\), which "
                                        r"transformers .* cannot load as a causal LM"):
        modules.check_architecture("org/t5", t5)
    new = {"model_type": "brand_new_lm", "architectures": ["BrandNewForCausalLM"], "auto_map": {"AutoModelForCausalLM": "x.Y"}}
    with pytest.raises(UserError, match="model_type 'brand_new_lm' .* does not know: upgrade transformers or "
                                        "trust_remote_code=true"):
        modules.check_architecture("org/new", new)
    modules.check_architecture("org/new", new, trust_remote_code=True)   # its own code builds it
    modules.check_architecture("org/llama", LLAMA)
    modules.check_architecture("org/gemma3", {"model_type": "gemma3"})   # image-text-to-text: axolotl trains it too


def test_a_local_folder_of_another_kind_of_model_is_refused_when_planned(plan, tmp_path):
    folder = model_folder(tmp_path, config={"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
                                            "d_model": 64, "num_layers": 2, "vocab_size": 100})
    with pytest.raises(UserError, match=r"^base_model=.* is a t5 \(T5ForConditionalGeneration\), which transformers"):
        plan(f"base_model={folder}")   # model=auto: before it asks for figures a T5 config cannot give


def test_lora_targets_must_name_layers_of_the_model():
    layers = [f"model.layers.{i}.{part}.{name}" for i in range(2) for part, names in
              (("self_attn", LINEAR[:4]), ("mlp", LINEAR[4:])) for name in names]
    found = {"linear": [*layers, "lm_head"], "targetable": ["model.embed_tokens", *layers, "lm_head"]}
    modules.check_lora_targets("m", ["q_proj", "self_attn.v_proj", "embed_tokens"], found)   # PEFT's suffix rule
    modules.check_lora_targets("m", r".*\.(q|v)_proj", found)   # one string: a regular expression
    with pytest.raises(UserError) as error:
        modules.check_lora_targets("m", ["q_proj", "qproj", "wq"], found)
    assert str(error.value) == ("lora_target_modules: qproj, wq matches no module of base_model=m (did you mean "
                                "'q_proj'?) (its linear layers: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                "down_proj, lm_head)")
    with pytest.raises(UserError, match=r"^lora_target_modules='attn\.c_attn' matches no module of base_model=m"):
        modules.check_lora_targets("m", "attn.c_attn", found)
    assert modules.linear_note(found, "llama") == (
        "lora_target_linear covers q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
        "(7 kinds of linear layer; not lm_head)")


def test_a_local_model_s_modules_come_from_the_meta_device_once(planned, tmp_path, monkeypatch):
    folder = model_folder(tmp_path)
    assert not any("lora_target_linear" in note for note in planned(folder).model_notes)   # a real run builds nothing
    assert not (tmp_path / "cache" / "modules").exists()
    job = planned(folder, "dry_run=true")   # the dry run says what lora_target_linear covers
    assert job.model_notes[0] == modules.linear_note({"linear": [*LINEAR, "lm_head"]}, "llama")
    with pytest.raises(UserError) as error:
        planned(folder, "lora_target_modules=[q_proj,c_attn]")
    assert str(error.value).startswith("lora_target_modules: c_attn matches no module of base_model=")
    assert "(its linear layers: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head)" in str(error.value)
    # kept on disk per config.json: another process (a fresh lru cache) builds nothing
    (kept,) = (tmp_path / "cache" / "modules").glob("*.json")
    assert "model.layers.29.mlp.down_proj" in json.loads(kept.read_text())["linear"]
    modules._built_modules.cache_clear()
    monkeypatch.setattr(modules, "_built_modules", lambda text: pytest.fail("built again"))
    assert planned(folder, "dry_run=true").model_notes == job.model_notes


def test_the_tokenizer_is_checked_and_a_missing_pad_set(planned, tmp_path):
    job = planned(model_folder(tmp_path, tokenizer={"eos_token": {"content": "</s>"}}), "adapter=none")
    assert job.config["special_tokens"] == {"pad_token": "</s>"}   # what axolotl would do, now in the record
    assert job.model_notes == ["tokenizer: EOS '</s>', pad '</s>', no chat template",
                               "set special_tokens.pad_token='</s>' (the tokenizer has no pad token: its EOS, as axolotl would)"]
    assert job.for_run("r1").axolotl_config["special_tokens"] == {"pad_token": "</s>"}

    no_eos = model_folder(tmp_path, tokenizer={"pad_token": "<pad>"}, name="no-eos")
    with pytest.raises(UserError, match=r"^the tokenizer of base_model=.*no-eos has no EOS token \(.*\): set "
                                        r"special_tokens.eos_token='...' to the token that ends a text"):
        planned(no_eos, "adapter=none")
    assert planned(no_eos, "adapter=none", "special_tokens.eos_token='</s>'").model_notes[0].startswith("tokenizer: EOS '</s>', pad '<pad>'")

    with pytest.raises(UserError, match=r"^base_model=.*bare has no tokenizer \(none of tokenizer.json, "):
        planned(model_folder(tmp_path, tokenizer=None, name="bare"), "adapter=none")


def test_a_chat_dataset_needs_a_chat_template(planned, tmp_path):
    chat = ("dataset=chat_template", "dataset.path=tests/data/chat.jsonl", "adapter=none")
    plain = model_folder(tmp_path, tokenizer={"eos_token": "</s>", "pad_token": "<pad>"}, name="plain")
    with pytest.raises(UserError, match="has no chat template and the dataset's chat_template type renders "
                                        "conversations with it: set chat_template=chatml"):
        planned(plain, *chat)
    assert planned(plain, *chat, "chat_template=chatml").model_notes == ["tokenizer: EOS '</s>', pad '<pad>', no chat template"]
    assert planned(model_folder(tmp_path), *chat).model_notes == ["tokenizer: EOS '</s>', pad '<pad>', its own chat template"]


def test_a_hub_model_not_cached_is_not_checked(planned):
    # the shipped groups' hub models are not here: nothing is built, nothing read (the combinations stay fast)
    assert planned("EleutherAI/pythia-14m", "model=pythia").model_notes == []


def test_a_model_transformers_cannot_build_here_is_skipped_and_remembered(tmp_path, monkeypatch):
    custom = {"model_type": "custom_lm", "auto_map": {"AutoModelForCausalLM": "modeling.CustomLM"}}
    calls = []
    monkeypatch.setattr(modules, "_built_modules", lambda text: calls.append(text))   # the child process failed
    assert modules.lora_modules(custom, tmp_path) is None and len(calls) == 1
    assert modules.lora_modules(custom, tmp_path) is None and len(calls) == 1   # not tried again
