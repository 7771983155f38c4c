"""The short convolutions of the generator (`key_conv`, `value_lookahead`, `key_lookahead`): zero-initialised, within a
chunk, exact against a hand-written reference, padding-invariant, additive (`extend` / `forget`), trainable, addable to
a saved generator without changing it."""

import pytest
import torch
from peft import PeftModel, get_peft_model

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))
QUERY = torch.tensor([[7, 8, 9, 10, 11, 12]])
TAPS = ("generator_key_conv", "generator_value_conv", "generator_key_lookahead")


def make(seed: int = 1, **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16, encoding="parallel")
    defaults.update(kwargs)
    torch.manual_seed(0)
    return randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(**defaults)), seed=seed)


def set_taps(model, std: float = 0.5, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in TAPS):
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return model


def layers(model):
    return {m.module_key: m for m in model.modules() if isinstance(m, pg.GenerativeLinear)}


def logits(model, context):
    with torch.no_grad(), model.use_context(context):
        return model(QUERY).logits


def test_zero_taps_leave_the_generator_exactly_as_without_them():
    plain = make()
    shifted = make(key_conv=3, value_lookahead=2, key_lookahead=4)
    assert all(not p.any() for n, p in shifted.named_parameters() if any(part in n for part in TAPS))
    a = plain.contextualize([DOC_A, DOC_B], activate=False)
    b = shifted.contextualize([DOC_A, DOC_B], activate=False)
    for key in a.states:
        assert torch.equal(a.states[key], b.states[key])


def test_state_update_matches_a_reference_written_token_by_token():
    model = set_taps(make(key_conv=2, value_lookahead=1, key_lookahead=3))
    layer = next(iter(layers(model).values()))
    torch.manual_seed(5)
    hidden = torch.randn(1, 7, 32)
    mask = torch.ones(1, 7, dtype=torch.long)
    got = layer.state_update(hidden, mask, "default")
    norm = layer.generator_norm["default"]
    h = hidden[0] * torch.rsqrt(hidden[0].pow(2).mean(-1, keepdim=True) + 1e-6) * norm
    kc, vc = layer.generator_key_conv["default"], layer.generator_value_conv["default"]
    kl = layer.generator_key_lookahead["default"]
    expected = torch.zeros(16, 16)
    for t in range(7):
        k = (h[t] + sum(kc[j - 1] * h[t - j] for j in (1, 2) if t - j >= 0)
             + sum(kl[j - 1] * h[t + j] for j in (1, 2, 3) if t + j < 7))
        v = h[t] + (vc[0] * h[t + 1] if t + 1 < 7 else 0)
        expected += torch.outer(layer.generator_A2["default"] @ k, layer.generator_A3["default"] @ v)
    torch.testing.assert_close(got[0], expected, rtol=1e-4, atol=1e-4)


def test_the_taps_change_the_adapter_and_padding_does_not():
    plain = make()
    model = set_taps(make(key_conv=3, value_lookahead=1, key_lookahead=2))
    base_ctx = plain.contextualize(DOC_A, activate=False)
    ctx = model.contextualize(DOC_A, activate=False)
    assert not torch.allclose(logits(model, ctx), logits(plain, base_ctx))
    both = model.contextualize([DOC_A, DOC_B], activate=False)  # DOC_B is padded on the right
    for i, doc in enumerate((DOC_A, DOC_B)):
        alone = model.contextualize(doc, activate=False)
        for key in alone.states:
            torch.testing.assert_close(both.states[key][i], alone.states[key][0], rtol=1e-5, atol=1e-5)


def test_states_stay_additive_extend_and_forget():
    model = set_taps(make(key_conv=2, value_lookahead=2, key_lookahead=3))
    only_a = model.contextualize(DOC_A, activate=False)
    both = only_a.extend(DOC_B)
    b = model.contextualize(DOC_B, activate=False)
    forgotten = both.forget(DOC_B)
    for key in only_a.states:
        torch.testing.assert_close(both.states[key], only_a.states[key] + b.states[key], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(forgotten.states[key], only_a.states[key], rtol=1e-4, atol=1e-4)
    assert not any(s.any() for s in forgotten.forget(DOC_A).states.values())


def test_chunks_do_not_read_across_their_boundary():
    """Two texts of exactly one window each: contextualized as one text they are two chunks, and the convolutions
    must not reach across, so the state is the sum of the two texts' states."""
    model = set_taps(make(key_conv=3, value_lookahead=3, key_lookahead=5, window=16))
    first, second = list(range(3, 19)), list(range(40, 56))
    joint = model.contextualize(first + second, activate=False)
    parts = [model.contextualize(t, activate=False) for t in (first, second)]
    for key in joint.states:
        torch.testing.assert_close(joint.states[key], parts[0].states[key] + parts[1].states[key],
                                   rtol=1e-5, atol=1e-5)


def test_the_taps_get_gradients_from_zero():
    model = make(key_conv=2, value_lookahead=1, key_lookahead=2)
    ctx = model.contextualize(DOC_A, requires_grad=True, activate=False)
    with model.use_context(ctx):
        model(QUERY).logits.pow(2).mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if any(part in n for part in TAPS)]
    assert len(grads) == 3 * len(layers(model))
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_convolutions_save_reload_and_can_be_added_to_a_saved_generator(tmp_path):
    from peft_generative.training.script import load_generator_for_training

    saved = make()
    saved.save_pretrained(tmp_path / "gen")
    grown = load_generator_for_training(tiny_model(), str(tmp_path / "gen"), key_conv=2, value_lookahead=1,
                                        key_lookahead=3)
    config = grown.peft_config["default"]
    assert (config.key_conv, config.value_lookahead, config.key_lookahead) == (2, 1, 3)
    for part in TAPS:
        assert any(part in n and p.requires_grad for n, p in grown.named_parameters())
    assert torch.equal(logits(grown, grown.contextualize(DOC_A, activate=False)),
                       logits(saved, saved.contextualize(DOC_A, activate=False)))
    set_taps(grown)
    grown.save_pretrained(tmp_path / "grown")
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "grown")
    assert torch.equal(logits(reloaded, reloaded.contextualize(DOC_A, activate=False)),
                       logits(grown, grown.contextualize(DOC_A, activate=False)))
    with pytest.raises(ValueError, match="key convolution of width 2"):
        load_generator_for_training(tiny_model(), str(tmp_path / "grown"), key_conv=4)


@pytest.mark.parametrize("field", ["key_conv", "value_lookahead", "key_lookahead"])
@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_widths_are_refused(field, bad):
    with pytest.raises(ValueError, match=field):
        pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", **{field: bad})
