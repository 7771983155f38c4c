import pytest
import torch
from peft import get_peft_model

import peft_generative as pg
from peft_generative.tuner.svd import smooth_svd

from .conftest import randomize_generator, tiny_model


def make(kind="llama", **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=12, rank=6, window=16)
    defaults.update(kwargs)
    return get_peft_model(tiny_model(kind), pg.GenerativeAdapterConfig(**defaults))


def test_fresh_generator_is_exactly_the_base_model(tiny_kind):
    base = tiny_model(tiny_kind)
    ids = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        ref = base(ids).logits
    model = get_peft_model(base, pg.GenerativeAdapterConfig(key_dim=16, value_dim=16, rank=8, window=32))
    ctx = model.contextualize([list(range(3, 60)), list(range(9, 30))])
    assert len(ctx) == 2
    with torch.no_grad():
        out = model(ids).logits
    assert torch.equal(out, ref)  # B = 0: the adapter is exactly zero


@pytest.mark.parametrize("normalization", ["svd", "frobenius", "none"])
def test_factors_equal_the_dense_formula(normalization):
    model = randomize_generator(make(normalization=normalization))
    layer = next(m for m in model.modules() if isinstance(m, pg.GenerativeLinear))
    cfg = model.peft_config["default"]
    torch.manual_seed(3)
    state = torch.randn(2, cfg.key_dim, cfg.value_dim)
    lora_a, lora_b = layer.factors(state, "default")
    a1, b = layer.generator_A1["default"].detach(), layer.generator_B["default"].detach()
    for i in range(2):
        if normalization == "svd":
            u, s, vh = torch.linalg.svd(state[i])
            n = u[:, : cfg.rank] @ vh[: cfg.rank]
        elif normalization == "frobenius":
            n = state[i] / state[i].norm()
        else:
            n = state[i]
        dense = cfg.scaling * b @ n.T @ a1
        assert torch.allclose(lora_b[i] @ lora_a[i], dense, atol=1e-5)
    assert lora_a.shape[1] == cfg.adapter_rank


def state_update_by_hand(center_keys: bool):
    """A layer's `state_update` on 5 real tokens + 2 padding, and the keys/values of the real tokens computed here."""
    model = randomize_generator(make(encoding="parallel", center_keys=center_keys))
    layer = next(m for m in model.modules() if isinstance(m, pg.GenerativeLinear))
    h = torch.randn(1, 7, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    got = layer.state_update(h, mask, "default")
    norm = layer.generator_norm["default"]
    hn = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * norm
    k = hn[0, :5] @ layer.generator_A2["default"].T
    v = hn[0, :5] @ layer.generator_A3["default"].T
    return model, layer, h, mask, got, k, v


def test_state_is_the_sum_over_tokens_of_kt_v():
    _, _, _, _, got, k, v = state_update_by_hand(center_keys=False)
    assert torch.allclose(got[0], k.T @ v, atol=1e-5)


def test_center_keys_gives_the_key_value_covariance_and_ignores_padding():
    model, layer, h, mask, got, k, v = state_update_by_hand(center_keys=True)
    centered = (k - k.mean(0)).T @ (v - v.mean(0))
    assert torch.allclose(got[0], centered, atol=1e-4)
    assert not torch.allclose(got[0], k.T @ v, atol=1e-2)
    # padding beyond the mask changes nothing
    assert torch.allclose(layer.state_update(h[:, :5], mask[:, :5], "default"), got, atol=1e-5)
    # a padded batch row gives the same state as the row alone
    a = list(range(1, 17))
    batch = model.contextualize([a, a[:9]])
    alone = model.contextualize(a[:9])
    for key in batch.states:
        assert torch.allclose(batch.states[key][1], alone.states[key][0], atol=1e-5)


@pytest.mark.parametrize("center_keys", [False, True])
def test_parallel_state_is_additive_over_chunks(center_keys):
    # with center_keys too: keys are centred per chunk, so parallel contexts can still forget exactly
    model = randomize_generator(make(encoding="parallel", center_keys=center_keys))
    a, b = list(range(1, 17)), list(range(40, 56))  # exactly one window each
    both = model.contextualize(a + b)
    sa = model.contextualize(a)
    sb = model.contextualize(b)
    for key in both.states:
        assert torch.allclose(both.states[key], sa.states[key] + sb.states[key], atol=1e-5)


def test_smoothed_svd_gradient_matches_torch_when_well_conditioned():
    torch.manual_seed(0)
    for shape in [(2, 6, 6), (2, 7, 5), (2, 5, 7)]:
        a = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        k = min(shape[1:])
        w_u = torch.randn(shape[0], shape[1], k, dtype=torch.float64)
        w_v = torch.randn(shape[0], k, shape[2], dtype=torch.float64)

        def loss(u, s, vh):
            return (u * w_u).sum() ** 2 + (vh * w_v).sum() + s.sum()

        (g_ref,) = torch.autograd.grad(loss(*torch.linalg.svd(a, full_matrices=False)), a)
        (g_ours,) = torch.autograd.grad(loss(*smooth_svd(a, 1e-9)), a)
        assert torch.allclose(g_ref, g_ours, atol=1e-8)


def test_smoothed_svd_gradient_is_finite_for_rank_deficient_states():
    torch.manual_seed(0)
    a = torch.zeros(1, 8, 8)
    a[0, :2, :3] = torch.randn(2, 3)
    a.requires_grad_()
    u, s, vh = smooth_svd(a, 1e-6)
    (u[..., :4] @ vh[..., :4, :]).sum().backward()
    assert torch.isfinite(a.grad).all()
    b = a.detach().clone().requires_grad_()
    u, s, vh = torch.linalg.svd(b, full_matrices=False)
    (u[..., :4] @ vh[..., :4, :]).sum().backward()
    assert not torch.isfinite(b.grad).all()  # what the smoothing protects against


def test_short_context_uses_only_its_real_directions():
    """A 3-token context has a rank-3 state: the zero singular directions must not enter the adapter."""
    model = randomize_generator(make(rank=6))
    ctx = model.contextualize([[5, 6, 7]])
    for lora_a, _ in ctx.factors.values():
        assert torch.linalg.matrix_rank(lora_a[0]) <= 3


def test_init_from_attention_starts_keys_and_values_as_the_layers_own(tiny_kind):
    # tiny models: k_proj / v_proj are 16 x 32 (2 kv heads x 8), so key_dim 20 keeps 4 Kaiming rows
    model = make(tiny_kind, key_dim=20, value_dim=12, init_from_attention=True)
    base_layers = model.base_model.model.model.layers
    for name, layer in model.base_model.generator_layers().items():
        decoder = base_layers[layer.layer_index]
        for param, proj in (("generator_A2", decoder.self_attn.k_proj), ("generator_A3", decoder.self_attn.v_proj)):
            _, s, vh = torch.linalg.svd(proj.weight.detach(), full_matrices=False)
            a = getattr(layer, param)["default"]
            rows = min(a.shape[0], s.shape[0])
            torch.testing.assert_close(a[:rows], s[:rows, None] * vh[:rows])
            # keys span the same input directions as the attention's keys
            torch.testing.assert_close(torch.linalg.matrix_rank(torch.cat([a[:rows], proj.weight])),
                                       torch.linalg.matrix_rank(proj.weight))
        assert torch.isfinite(layer.generator_A2["default"]).all()
        unit = torch.ones(1, 32)
        torch.testing.assert_close(layer.generator_norm["default"], decoder.input_layernorm(unit).reshape(-1))
        assert not layer.generator_B["default"].any()
    # still exactly the base model until trained (B = 0), and deterministic
    ids = torch.randint(0, 128, (1, 10))
    model.contextualize(list(range(3, 40)))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_model(tiny_kind)(ids).logits)
    again = make(tiny_kind, key_dim=20, value_dim=12, init_from_attention=True)
    first = {k: v for k, v in model.state_dict().items() if "generator_A2" in k}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.items())


def test_token_gate_starts_as_no_gate_keeps_states_additive_and_trains(tmp_path):
    from peft import PeftModel

    plain = randomize_generator(make(key_dim=16, value_dim=16, rank=8, encoding="parallel"))
    gated = randomize_generator(make(key_dim=16, value_dim=16, rank=8, encoding="parallel", token_gate=True))
    ids = [list(range(5, 40))]
    # w = 0, b = 0: every token weighs 1/2, which the svd normalisation cannot tell from no gate
    for (a, b), (ga, gb) in zip(plain.contextualize(ids).factors.values(), gated.contextualize(ids).factors.values()):
        torch.testing.assert_close(a, ga)
        torch.testing.assert_close(b, gb)
    with torch.no_grad():
        for name, param in gated.named_parameters():
            if "generator_gate" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)))
    first = gated.contextualize([list(range(5, 30))], activate=False)
    second = gated.contextualize([list(range(30, 60))], activate=False)
    streamed = first.extend([list(range(30, 60))])
    for key in streamed.states:  # gated states are still sums over texts
        torch.testing.assert_close(streamed.states[key], first.states[key] + second.states[key])
    gated_factors = gated.contextualize(ids, activate=False).factors
    assert any(not torch.allclose(a, ga, atol=1e-5) for (a, _), (ga, _) in
               zip(plain.contextualize(ids).factors.values(), gated_factors.values()))
    # the gate gets gradients and round-trips through save / load
    ctx = gated.contextualize(ids, requires_grad=True, activate=False)
    with gated.use_context(ctx):
        gated(torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    grads = [p.grad for n, p in gated.named_parameters() if "generator_gate" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    gated.save_pretrained(tmp_path / "gen")
    loaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "gen")
    for (a, _), (la, _) in zip(gated_factors.values(), loaded.contextualize(ids).factors.values()):
        torch.testing.assert_close(a, la)
