import json

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftModel, get_peft_model

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOC = list(range(3, 50))
QUERY = torch.tensor([[7, 8, 9, 10, 11]])


def make(kind="llama", **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16)
    defaults.update(kwargs)
    return randomize_generator(get_peft_model(tiny_model(kind), pg.GenerativeAdapterConfig(**defaults)))


def generator_state(model):
    return {k: v for k, v in model.state_dict().items() if "generator_" in k}


def test_save_and_load_roundtrip_bit_exact(tmp_path, tiny_kind):
    model = make(tiny_kind)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").exists()
    loaded = PeftModel.from_pretrained(tiny_model(tiny_kind), tmp_path)
    assert isinstance(loaded.base_model, pg.GenerativeAdapterModel)
    a, b = generator_state(model), generator_state(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in loaded.parameters())  # inference: frozen
    ca, cb = model.contextualize(DOC), loaded.contextualize(DOC)
    with torch.no_grad():
        assert torch.equal(model(QUERY).logits, loaded(QUERY).logits)
    assert all(torch.equal(ca.factors[k][0], cb.factors[k][0]) for k in ca.factors)
    trainable = PeftModel.from_pretrained(tiny_model(tiny_kind), tmp_path, is_trainable=True)
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "generator_" in n)
    assert not any(p.requires_grad for n, p in trainable.named_parameters() if "generator_" not in n)


def test_auto_peft_model_loads_the_generator(tmp_path):
    base_dir = tmp_path / "base"
    tiny_model().save_pretrained(base_dir)
    from transformers import AutoModelForCausalLM

    model = randomize_generator(
        get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                       pg.GenerativeAdapterConfig(key_dim=16, value_dim=16, rank=8, window=16))
    )
    model.save_pretrained(tmp_path / "gen")
    config = json.loads((tmp_path / "gen" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir)
    auto = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "gen")
    a, b = generator_state(model), generator_state(auto)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_card_says_how_to_load(tmp_path):
    make().save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "library_name: peft" in card
    assert "generative-adapter" in card
    assert "base_model: tiny-random-llama" in card
    assert "import peft_generative" in card


def test_loading_onto_another_base_model_names_both(tmp_path):
    make("llama").save_pretrained(tmp_path)
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    other.config._name_or_path = "other-model"
    with pytest.raises(ValueError, match="tiny-random-llama.*other-model"):
        PeftModel.from_pretrained(other, tmp_path)


def test_corrupt_generator_file_gives_a_clear_error(tmp_path):
    make().save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception) as info:
        PeftModel.from_pretrained(tiny_model(), tmp_path)
    assert "safetensors" in str(info.value).lower() or "header" in str(info.value).lower()


def test_merge_of_a_generator_is_refused_but_unload_works():
    model = make()
    with pytest.raises(NotImplementedError, match="save_pretrained"):
        model.merge_and_unload()
    base = model.unload()
    assert not any(isinstance(m, pg.GenerativeLinear) for m in base.modules())
    assert all(not m._forward_pre_hooks for m in base.modules())
