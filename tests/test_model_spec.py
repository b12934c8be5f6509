"""A model's architecture figures read off its config.json (runner.models.spec): the parameter count equals
what transformers builds from the same config (on the meta device: no weights), for the layouts counted
(dense, grouped K/V heads, tied or untied embeddings, experts); a model group's figures that are not the
model's own are named."""

import pytest

from runner.models import spec

SMALL = {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 3, "num_attention_heads": 8,
         "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 256, "pad_token_id": 0}


@pytest.mark.parametrize("model_type, extra", [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": True, "num_key_value_heads": 8}),
    ("mistral", {}),
    ("qwen2", {}),
    ("qwen3", {"head_dim": 16}),
    ("gemma", {"head_dim": 16}),
    ("phi3", {"num_key_value_heads": 8}),
    ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    ("gpt_neox", {"num_key_value_heads": None}),
])
def test_the_parameter_count_is_what_transformers_builds(model_type, extra):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **{k: v for k, v in {**SMALL, **extra}.items() if v is not None})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    built = sum(p.numel() for p in model.parameters())
    total, active = spec.parameter_count(config.to_dict())
    assert total == built
    if model_type == "mixtral":   # a token goes through 2 of the 4 experts' MLPs
        assert active == built - 2 * 3 * 3 * SMALL["hidden_size"] * SMALL["intermediate_size"]
    else:
        assert active == total


def test_a_group_s_figures_that_are_not_the_model_s_own_are_named():
    smollm = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
              "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}
    derived = spec.derive(smollm)
    assert derived["params_b"] == pytest.approx(0.1345, abs=1e-4) and derived["num_kv_heads"] == 3
    smollm_group = {"params_b": 0.135, "active_params_b": 0.135, "hidden_size": 576, "num_layers": 30,
                    "intermediate_size": 1536, "vocab_size": 49152, "num_heads": 9, "num_kv_heads": 3}
    assert spec.contradictions(smollm_group, derived) == []
    llama2_group = {"params_b": 6.74, "hidden_size": 4096, "num_layers": 32, "num_heads": 32, "num_kv_heads": 32}
    found = spec.contradictions(llama2_group, derived)
    assert found[0] == "hidden_size 4096 (config.json: 576)" and found[-1] == "params_b 6.74 (config.json: 0.1345)"
    assert spec.derive({"model_type": "rwkv", "hidden_size": 64})["params_b"] is None   # not counted: no claim
