import pytest
import torch
from peft import get_peft_model

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOCS = [list(range(3, 50)), list(range(60, 90))]
TARGET = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(0))


def make(**kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16)
    defaults.update(kwargs)
    return randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(**defaults)), std=0.05)


def step_grads(model):
    model.train()
    model.zero_grad(set_to_none=True)
    ctx = model.contextualize(DOCS, requires_grad=True, activate=False)
    with model.use_context(ctx):
        loss = model(input_ids=TARGET, labels=TARGET).loss
    loss.backward()  # outside the block, as trainers do
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("encoding", ["sequential", "parallel"])
def test_gradients_reach_the_generator_and_never_the_base(encoding):
    model = make(encoding=encoding)
    _, grads = step_grads(model)
    names = {n.split(".")[-2] for n in grads}
    assert {"generator_A1", "generator_A2", "generator_A3", "generator_B", "generator_norm"} <= names
    assert all("generator_" in n for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(not p.requires_grad for n, p in model.named_parameters() if "generator_" not in n)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = make()
    loss_ref, ref = step_grads(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    loss_gc, got = step_grads(model)
    assert torch.allclose(loss_ref, loss_gc)
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.allclose(ref[name], got[name], atol=1e-6, rtol=1e-4), name


def test_sequential_gradient_flows_through_the_chunk_recurrence():
    """The state's last chunk depends on the adapter built from earlier chunks: perturbing B changes it."""
    model = make(encoding="sequential")
    layer = next(m for m in model.modules() if isinstance(m, pg.GenerativeLinear) and m.layer_index == 2)
    b0 = next(m for m in model.modules() if isinstance(m, pg.GenerativeLinear) and m.layer_index == 0)
    ctx = model.contextualize([DOCS[0]], requires_grad=True, activate=False)
    (grad,) = torch.autograd.grad(ctx.states[layer.module_key].sum(), b0.generator_B["default"])
    assert grad.abs().sum() > 0
