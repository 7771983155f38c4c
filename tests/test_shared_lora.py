"""The generator's shared, context-independent LoRA (`shared_rank`): the style/content split of issue 22."""

import pytest
import torch
from peft import PeftModel, get_peft_model

import peft_generative as pg

from .conftest import randomize_generator, tiny_model

DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))
QUERY = torch.tensor([[7, 8, 9, 10, 11, 12]])


def make(shared_rank=4, seed=3, **kwargs):
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16,
                                        shared_rank=shared_rank, **kwargs)
    model = randomize_generator(get_peft_model(tiny_model(), config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "generator_shared_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model


def logits(model, context):
    with torch.no_grad(), model.use_context(context):
        return model(QUERY).logits


def test_config_checks_and_ranks():
    config = pg.GenerativeAdapterConfig(key_dim=16, value_dim=16, rank=8, shared_rank=4)
    assert (config.generated_rank, config.adapter_rank) == (8, 12)
    assert pg.GenerativeAdapterConfig(key_dim=16, value_dim=16, rank=8, normalization="none",
                                      shared_rank=2).adapter_rank == 18
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="shared_rank"):
            pg.GenerativeAdapterConfig(shared_rank=bad)


def test_the_shared_part_is_the_same_for_every_context_and_the_rest_is_the_contexts():
    model = make()
    ctx = model.contextualize([DOC_A, DOC_B], activate=False)
    layer = next(iter(pg.generator_of(model).layers.values()))
    for key, (a, b) in ctx.factors.items():
        assert a.shape[1] == 12 and b.shape[2] == 12
        torch.testing.assert_close(a[0, 8:], a[1, 8:])  # the shared ranks: one LoRA for both contexts
        torch.testing.assert_close(b[0, :, 8:], b[1, :, 8:])
        assert not torch.allclose(a[0, :8], a[1, :8])  # the generated ranks: each context's own
    key = layer.module_key
    a, b = ctx.factors[key]
    shared_delta = layer.generator_shared_B["default"] @ layer.generator_shared_A["default"]
    torch.testing.assert_close(b[0, :, 8:] @ a[0, 8:], shared_delta)
    generated_a, generated_b = ctx.context_factors()[key]
    assert generated_a.shape[1] == 8
    torch.testing.assert_close(generated_b[0] @ generated_a[0] + shared_delta, b[0] @ a[0])
    expected = sum(((gb @ ga).flatten(1) ** 2).sum(1) for ga, gb in ctx.context_factors().values())
    torch.testing.assert_close(ctx.context_delta_sq_norm(), expected)


def test_the_shared_part_changes_outputs_and_at_zero_nothing():
    model = make()
    with_shared = logits(model, model.contextualize(DOC_A, activate=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "generator_shared_B" in name:
                param.zero_()
    at_zero = model.contextualize(DOC_A, activate=False)
    assert not torch.allclose(logits(model, at_zero), with_shared)
    assert all(not b[:, :, 8:].any() for _, b in at_zero.factors.values())


def test_export_folds_both_parts_into_one_plain_lora(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A, activate=False)
    adapted = logits(model, ctx)
    ctx.save_pretrained(tmp_path / "lora")
    plain = PeftModel.from_pretrained(tiny_model(), tmp_path / "lora")
    assert plain.peft_config["default"].r == 12
    with torch.no_grad():
        torch.testing.assert_close(plain(QUERY).logits, adapted, atol=1e-5, rtol=1e-4)


def test_rows_without_context_stay_the_base_model():
    model = make(encoding="parallel")
    with model.use_context(None):
        base = model(QUERY).logits.detach()
    emptied = model.contextualize(DOC_A, activate=False).forget(DOC_A)
    assert torch.equal(logits(model, emptied), base)
    stacked = pg.GeneratedContext.stack([model.contextualize(DOC_A, activate=False), None])
    torch.testing.assert_close(logits(model, stacked[1]), base)


def test_a_generator_with_a_shared_part_saves_and_loads(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A, activate=False)
    model.save_pretrained(tmp_path / "gen")
    loaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "gen")
    assert loaded.peft_config["default"].shared_rank == 4
    again = loaded.contextualize(DOC_A, activate=False)
    for key, (a, b) in ctx.factors.items():
        torch.testing.assert_close(again.factors[key][0], a)
        torch.testing.assert_close(again.factors[key][1], b)


def test_a_shared_part_can_be_added_to_a_saved_generator(tmp_path):
    from peft_generative.training.script import load_generator_for_training

    saved = make(shared_rank=0)
    saved.save_pretrained(tmp_path / "gen")
    grown = load_generator_for_training(tiny_model(), str(tmp_path / "gen"), shared_rank=4)
    assert grown.peft_config["default"].shared_rank == 4
    assert any("generator_shared_A" in n and p.requires_grad for n, p in grown.named_parameters())
    torch.testing.assert_close(logits(grown, grown.contextualize(DOC_A, activate=False)),
                               logits(saved, saved.contextualize(DOC_A, activate=False)))
    grown.save_pretrained(tmp_path / "grown")
    with pytest.raises(ValueError, match="shared LoRA of rank 4"):
        load_generator_for_training(tiny_model(), str(tmp_path / "grown"), shared_rank=8)
    kept = load_generator_for_training(tiny_model(), str(tmp_path / "grown"))
    assert kept.peft_config["default"].shared_rank == 4


def test_common_share_is_measured_on_the_part_written_from_the_context():
    from .conftest import load_example_script

    script = load_example_script("adapter_similarity")
    model = make()
    result = script.similarity(model, [DOC_A, DOC_B, list(range(90, 127))])
    summary = result["summary"]
    # a shared LoRA is the same for every context: the whole adapter is more alike than the generated part
    assert summary["common_share_whole_adapter"]["mean"] > summary["common_share"]["mean"]
    same = script.similarity(model, [DOC_A, DOC_A])["summary"]
    assert same["common_share"]["mean"] == pytest.approx(1.0, abs=1e-5)
    plain = script.similarity(make(shared_rank=0), [DOC_A, DOC_B])["summary"]
    assert "common_share_whole_adapter" not in plain
