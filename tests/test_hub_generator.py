"""The generator through a real Hub-compatible server (olah on 127.0.0.1): download, push, load back."""

import json

import torch
from peft import AutoPeftModelForCausalLM, PeftModel, get_peft_model
from safetensors.torch import load

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOC = list(range(3, 40))
QUERY = torch.tensor([[7, 8, 9, 10]])


def generator(model):
    return {k: v for k, v in model.state_dict().items() if "generator_" in k}


def make(name="user/tiny-base"):
    base = tiny_model()
    base.config._name_or_path = name
    return randomize_generator(get_peft_model(base, pg.GenerativeAdapterConfig(key_dim=16, value_dim=16, rank=8,
                                                                               window=16)))


def test_generator_downloads_from_the_hub(hub, tmp_path):
    model = make()
    model.save_pretrained(tmp_path / "gen")
    hub.publish(tmp_path / "gen", "alice/tiny-generator")
    loaded = PeftModel.from_pretrained(tiny_model(), "alice/tiny-generator")
    a, b = generator(model), generator(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tiny_model().save_pretrained(tmp_path / "base")  # AutoPeft needs the base model from the Hub as well
    hub.publish(tmp_path / "base", "user/tiny-base")
    auto = AutoPeftModelForCausalLM.from_pretrained("alice/tiny-generator")
    model.contextualize(DOC)
    auto.contextualize(DOC)
    with torch.no_grad():
        assert torch.equal(model(QUERY).logits, auto(QUERY).logits)


def test_model_push_to_hub_uploads_a_loadable_generator(hub_push):
    model = make()
    model.push_to_hub("user/pushed-generator")
    files = hub_push.last_commit.files
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert json.loads(files["adapter_config.json"])["peft_type"] == "GENERATIVE_ADAPTER"
    weights = load(files["adapter_model.safetensors"])
    assert all(torch.equal(weights[k.replace(".default", "")], v) for k, v in generator(model).items())
    loaded = PeftModel.from_pretrained(tiny_model(), "user/pushed-generator")
    assert all(torch.equal(generator(model)[k], generator(loaded)[k]) for k in generator(model))


def test_push_to_hub_helper_keeps_the_full_model_card(hub_push):
    model = make()
    pg.push_to_hub(model, "user/carded-generator")
    card = hub_push.last_commit.files["README.md"].decode()
    assert "library_name: peft" in card
    assert "generative-adapter" in card
    assert "base_model: user/tiny-base" in card
    assert "import peft_generative" in card
    # the card tells users to load the repository it was pushed to, not the temporary directory it was saved in
    assert 'PeftModel.from_pretrained(base_model, "user/carded-generator")' in card
    assert "tmp" not in card.split("## Generative Adapter")[1]
    loaded = PeftModel.from_pretrained(tiny_model(), "user/carded-generator")
    assert all(torch.equal(generator(model)[k], generator(loaded)[k]) for k in generator(model))
