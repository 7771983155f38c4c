"""Optional test-time refinement: `contextualize(..., refine_steps=N)` (issue 22)."""

import pytest
import torch
from peft import get_peft_model

import peft_generative as pg
from peft_generative.tuner.refine import reconstruction_loss, reconstruction_windows

from .conftest import randomize_generator, tiny_model

DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))


def make(seed=1, **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16, encoding="parallel")
    defaults.update(kwargs)
    return randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(**defaults)), seed=seed)


def own_loss(model, ctx, docs):
    generator = pg.generator_of(model)
    windows, owners = reconstruction_windows(docs, generator.config.window, 1024)
    with torch.no_grad():
        return reconstruction_loss(generator, ctx, windows, owners).item()


def test_refinement_lowers_the_reconstruction_loss_and_only_moves_the_states():
    model = make()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plain = model.contextualize([DOC_A, DOC_B], activate=False, progress=False)
    refined = model.contextualize([DOC_A, DOC_B], activate=False, progress=False, refine_steps=10, refine_lr=0.1)
    assert own_loss(model, refined, [DOC_A, DOC_B]) < own_loss(model, plain, [DOC_A, DOC_B]) - 1e-3
    assert refined.refined == [True, True] and plain.refined == [False, False]
    assert refined.num_tokens == plain.num_tokens
    assert all(not torch.equal(refined.states[k], plain.states[k]) for k in plain.states)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name  # nothing but the context changed
        assert param.grad is None


def test_refinement_is_deterministic_and_rows_are_independent():
    model = make()
    both = model.contextualize([DOC_A, DOC_B], activate=False, progress=False, refine_steps=4)
    again = model.contextualize([DOC_A, DOC_B], activate=False, progress=False, refine_steps=4)
    alone = model.contextualize(DOC_B, activate=False, progress=False, refine_steps=4)
    for key in both.states:
        assert torch.equal(both.states[key], again.states[key])
        # batched vs alone: float rounding only
        torch.testing.assert_close(both.states[key][1:], alone.states[key], rtol=1e-3, atol=1e-5)


def test_refined_context_saves_and_loads_as_refined_and_cannot_forget(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A, activate=False, progress=False, refine_steps=3)
    path = tmp_path / "memory.safetensors"
    ctx.save_state(str(path))
    loaded = model.load_context(str(path), activate=False)
    assert loaded.refined == [True]
    for key in ctx.states:
        assert torch.equal(loaded.factors[key][0], ctx.factors[key][0])
    with pytest.raises(ValueError, match="refined at test time"):
        loaded.forget(DOC_A)
    extended = loaded.extend(DOC_B)
    assert extended.refined == [True] and extended.num_tokens == [len(DOC_A) + len(DOC_B)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(refine_steps=-1), "non-negative int"),
    (dict(refine_steps=2.5), "non-negative int"),
    (dict(refine_steps=True), "non-negative int"),
    (dict(refine_steps="3"), "non-negative int"),
    (dict(refine_steps=2, refine_lr=0.0), "refine_lr must be positive"),
    (dict(refine_steps=2, refine_max_tokens=1), "at least 2"),
    (dict(refine_steps=2, requires_grad=True), "test-time option"),
])
def test_bad_refinement_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make().contextualize(DOC_A, activate=False, **kwargs)


def test_windows_cover_the_first_tokens_and_drop_single_token_pieces():
    windows, owners = reconstruction_windows([list(range(10)), [5], list(range(33))], 16, 20)
    assert windows == [list(range(10)), list(range(16)), list(range(16, 20))]
    assert owners == [0, 2, 2]
