"""`value_source="embedding"` / `"next_embedding"`: the generator's values read each context token's input embedding
(or the next token's) while keys read the layer. Exact against a hand-written state, padding-invariant, additive
(`extend` / `forget` exact), trainable, saved and reloaded."""

import pytest
import torch
from peft import PeftModel, get_peft_model

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))


def make(**kwargs):
    options = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16, encoding="parallel",
                   value_source="embedding")
    options.update(kwargs)
    torch.manual_seed(0)
    return randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(**options)), seed=1)


def layers(model):
    return [m for m in model.modules() if isinstance(m, pg.GenerativeLinear)]


def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


@pytest.mark.parametrize("source", ["embedding", "next_embedding"])
def test_the_state_is_the_sum_of_layer_keys_times_embedding_values(source):
    model = make(value_source=source)
    ids = torch.tensor([DOC_B[:12]])
    captured = {}
    hooks = [model.get_submodule(f"base_model.model.model.layers.{m.layer_index}").register_forward_pre_hook(
        lambda mod, args, kwargs, i=m.layer_index: captured.__setitem__(i, (args[0] if args else
                                                                          kwargs["hidden_states"]).detach()),
        with_kwargs=True, prepend=True) for m in layers(model)]  # before the capture hook, which stops the pass
    with torch.no_grad():
        ctx = model.contextualize(ids[0].tolist(), activate=False)  # fills `captured` through the hooks
    for h in hooks:
        h.remove()
    embeddings = model.get_input_embeddings()(ids)[0]
    for layer in layers(model):
        keys = (rms(captured[layer.layer_index][0]) * layer.generator_norm["default"]) @ layer.generator_A2["default"].T
        values = rms(embeddings) @ layer.generator_A3["default"].T
        expected = keys.T @ values if source == "embedding" else keys[:-1].T @ values[1:]  # token t stores t + 1
        torch.testing.assert_close(ctx.states[layer.module_key][0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("source", ["embedding", "next_embedding"])
def test_padding_and_chunk_boundaries_change_nothing_but_the_boundary(source):
    model = make(value_source=source)
    both = model.contextualize([DOC_A, DOC_B], activate=False)  # DOC_B is padded on the right
    for i, doc in enumerate((DOC_A, DOC_B)):
        alone = model.contextualize(doc, activate=False)
        for key in alone.states:
            torch.testing.assert_close(both.states[key][i], alone.states[key][0], rtol=1e-5, atol=1e-5)
    # a context is the sum of its chunks (window 16): the last token of a chunk stores nothing across the boundary
    chunks = [DOC_A[i: i + 16] for i in range(0, len(DOC_A), 16)]
    parts = [model.contextualize(c, activate=False) for c in chunks]
    whole = model.contextualize(DOC_A, activate=False)
    for key in whole.states:
        torch.testing.assert_close(whole.states[key], sum(p.states[key] for p in parts), rtol=1e-5, atol=1e-5)


def test_the_source_changes_the_values_of_every_layer_but_the_first():
    layer_model = make(value_source="layer")
    a = layer_model.contextualize(DOC_A, activate=False)
    b = make().contextualize(DOC_A, activate=False)
    index = {m.module_key: m.layer_index for m in layers(layer_model)}
    for key in a.states:  # the first decoder layer's input is the embedding itself (a Llama-style model)
        assert torch.allclose(a.states[key], b.states[key]) == (index[key] == 0)


@pytest.mark.parametrize("source", ["embedding", "next_embedding"])
def test_states_stay_additive_extend_and_forget_are_exact(source):
    model = make(value_source=source)
    both = model.contextualize(DOC_A, activate=False)
    both = model.contextualize(DOC_B, extend=both, activate=False)
    forgotten = model.forget(both, DOC_B)
    alone = model.contextualize(DOC_A, activate=False)
    for key in alone.states:
        torch.testing.assert_close(forgotten.states[key], alone.states[key], rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_value_projection_and_a_saved_generator_reloads_exactly(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A, requires_grad=True, activate=False)
    with model.use_context(ctx):
        loss = model(torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss
    loss.backward()
    grads = [m.generator_A3["default"].grad for m in layers(model)]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    model.save_pretrained(tmp_path)
    assert pg.GenerativeAdapterConfig.from_pretrained(tmp_path).value_source == "embedding"
    torch.manual_seed(0)
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path)
    again = reloaded.contextualize(DOC_A, activate=False)
    for key in ctx.states:
        assert torch.equal(again.states[key], ctx.states[key].detach())


def test_an_unknown_source_is_refused():
    with pytest.raises(ValueError, match="value_source"):
        pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", value_source="keys")
