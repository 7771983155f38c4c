"""Tests on the real SmolLM2-135M-Instruct (the embedded default model), CPU, fp32."""

import time

import pytest
import torch
from peft import PeftModel, get_peft_model

import peft_generative as pg

from .conftest import randomize_generator

pytestmark = pytest.mark.real_model

PARAGRAPH = (
    "The harbour town of Velmora was founded by salt traders who arrived by river in the spring. They built "
    "wooden warehouses along the quay, and within a generation the town council had paved the market square "
    "with grey stone carried from the northern quarries. "
)


def chat_ids(tokenizer, question):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def small_config(**kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=64, value_dim=64, rank=16, window=1024)
    defaults.update(kwargs)
    return pg.GenerativeAdapterConfig(**defaults)


def test_untrained_generator_answers_like_the_base_model(real_model):
    base, tok = real_model
    inputs = chat_ids(tok, "What is the capital of France?")
    with torch.no_grad():
        expected = base.generate(**inputs, max_new_tokens=12, do_sample=False)
    model = get_peft_model(base, small_config())
    model.contextualize(PARAGRAPH * 4, tokenizer=tok)
    with torch.no_grad():
        got = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(got, expected)
    assert "Paris" in tok.decode(got[0, inputs["input_ids"].shape[1]:])


def test_4k_token_context_streams_in_chunks_and_exports(real_model, tmp_path):
    base, tok = real_model
    text = PARAGRAPH * 82
    n_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
    assert n_tokens >= 4096
    model = randomize_generator(get_peft_model(base, small_config()), std=0.02)
    start = time.perf_counter()
    ctx = model.contextualize(text, tokenizer=tok)
    elapsed = time.perf_counter() - start
    assert ctx.num_tokens == [n_tokens]
    assert all(s.shape == (1, 64, 64) for s in ctx.states.values())  # bounded memory: one state per module
    assert ctx.adapter_numel == 30 * 16 * (576 + 576)
    print(f"contextualized {n_tokens} tokens in {elapsed:.1f}s")

    inputs = chat_ids(tok, "Who founded Velmora?")
    with torch.no_grad():
        adapted = model(**inputs).logits
        with model.use_context(None):
            plain = model(**inputs).logits
    assert not torch.allclose(adapted, plain, atol=1e-3)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]

    ctx.save_pretrained(tmp_path / "lora")
    bare = model.unload()  # the same weights, without the generator
    lora = PeftModel.from_pretrained(bare, tmp_path / "lora")
    with torch.no_grad():
        exported = lora(**inputs).logits
    assert torch.allclose(exported, adapted, atol=1e-4), (exported - adapted).abs().max()


def test_training_step_on_the_real_model(real_model):
    base, tok = real_model
    model = randomize_generator(get_peft_model(base, small_config(window=64)), std=0.01)
    model.train()
    ctx = model.contextualize([PARAGRAPH * 2, PARAGRAPH], tokenizer=tok, requires_grad=True, activate=False)
    target = tok(["The town was founded by salt traders.", "Stone came from the quarries."], return_tensors="pt",
                 padding=True)
    labels = target["input_ids"].masked_fill(target["attention_mask"] == 0, -100)
    with model.use_context(ctx):
        loss = model(**target, labels=labels).loss
    loss.backward()
    gen = [p for n, p in model.named_parameters() if "generator_" in n]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen)
    assert any(p.grad.abs().sum() > 0 for p in gen)
    assert all(p.grad is None for n, p in model.named_parameters() if "generator_" not in n)


def test_the_main_job_runs_with_the_shipped_generator(capsys):
    """`peft-generative demo` (the README's main command): the default model loads with the shipped, trained
    generator, which writes a non-zero adapter for the bundled document."""
    from peft_generative.cli import main
    from peft_generative.loading import load_generative_model, shipped_generator_path

    shipped = shipped_generator_path()
    assert shipped is not None and (shipped / "adapter_model.safetensors").stat().st_size <= 25 * 2**20
    model, tok, info = load_generative_model()
    assert info["trained"] and info["shipped"] and info["generator"] == str(shipped)
    assert not load_generative_model(generator=str(shipped))[2]["shipped"]  # named explicitly: reported by path
    ctx = model.contextualize(PARAGRAPH, tokenizer=tok)
    lora_a, lora_b = next(iter(ctx.factors.values()))
    assert torch.isfinite(lora_a).all() and torch.isfinite(lora_b).all() and lora_b.abs().sum() > 0
    inputs = chat_ids(tok, "Who founded Velmora?")
    with torch.no_grad():
        with model.use_context(None):
            plain = model(**inputs).logits
        with model.use_context(ctx):
            adapted = model(**inputs).logits
    assert not torch.allclose(plain, adapted, atol=1e-3)

    assert main(["demo", "--question", "Who founded Quillmoor?", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert f"generator: {shipped}" in out and "Q: Who founded Quillmoor?" in out
    for label in ("base model (no context)", "generative adapter", "context in prompt"):
        assert label in out


def test_generators_for_the_embedded_model_name_its_hub_id(real_model, tmp_path):
    """A generator trained on the embedded checkpoint must not record this machine's cache path as its base model:
    its config and model card name the Hub id, which `load_base_model` maps back to the embedded checkpoint."""
    import json

    from peft_generative.default_model import DEFAULT_HUB_ID, default_model_path, resolve_model

    base, _ = real_model
    assert base.config._name_or_path == base.name_or_path == DEFAULT_HUB_ID
    model = get_peft_model(base, small_config(layers_to_transform=[0]))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == DEFAULT_HUB_ID
    assert f"base_model: {DEFAULT_HUB_ID}" in (tmp_path / "README.md").read_text()
    assert resolve_model(DEFAULT_HUB_ID) == str(default_model_path())
