import threading

import pytest
import torch
from peft import get_peft_model

import peft_generative as pg
from peft_generative import GeneratedContext

from .conftest import randomize_generator, tiny_model


def make(kind="llama", **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16)
    defaults.update(kwargs)
    return randomize_generator(get_peft_model(tiny_model(kind), pg.GenerativeAdapterConfig(**defaults)))


DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))
QUERY = torch.tensor([[7, 8, 9, 10, 11, 12]])


def logits(model, ids, context="unset", **kwargs):
    with torch.no_grad():
        if context == "unset":
            return model(ids, **kwargs).logits
        with model.use_context(context):
            return model(ids, **kwargs).logits


def test_context_changes_outputs_and_base_is_restorable(tiny_kind):
    model = make(tiny_kind)
    with model.use_context(None):
        base = logits(model, QUERY)
    ctx = model.contextualize(DOC_A)
    assert model.active_context is ctx
    adapted = logits(model, QUERY)
    assert not torch.allclose(adapted, base)
    with model.disable_adapter():
        assert torch.equal(logits(model, QUERY), base)
    model.clear_context()
    assert torch.equal(logits(model, QUERY), base)


def test_deterministic_bit_identical_adapters():
    model = make()
    c1 = model.contextualize([DOC_A, DOC_B])
    c2 = model.contextualize([DOC_A, DOC_B])
    for key in c1.factors:
        assert torch.equal(c1.factors[key][0], c2.factors[key][0])
        assert torch.equal(c1.factors[key][1], c2.factors[key][1])


def test_batched_contextualize_equals_one_by_one():
    model = make()
    both = model.contextualize([DOC_A, DOC_B])
    alone = [model.contextualize(d) for d in (DOC_A, DOC_B)]
    for i in range(2):
        for key in both.states:
            assert torch.allclose(both.states[key][i], alone[i].states[key][0], atol=1e-5)


def test_sequential_uses_the_adapter_of_earlier_chunks():
    seq = make(encoding="sequential")
    par = make(encoding="parallel")
    one_chunk = DOC_A[:16]
    # one chunk: both modes read the base model
    s1, p1 = seq.contextualize(one_chunk), par.contextualize(one_chunk)
    assert all(torch.allclose(s1.states[k], p1.states[k], atol=1e-6) for k in s1.states)
    # several chunks: the later chunks differ in sequential mode
    s2, p2 = seq.contextualize(DOC_A), par.contextualize(DOC_A)
    assert not all(torch.allclose(s2.states[k], p2.states[k], atol=1e-4) for k in s2.states)


@pytest.mark.parametrize("encoding", ["sequential", "parallel"])
def test_streaming_extend_equals_one_pass(encoding):
    model = make(encoding=encoding)
    head, tail = DOC_A[:32], DOC_A[32:]  # the head is a whole number of windows
    whole = model.contextualize(DOC_A)
    streamed = model.contextualize(head).extend(tail)
    assert streamed.num_tokens == [len(DOC_A)]
    for key in whole.states:
        assert torch.allclose(whole.states[key], streamed.states[key], atol=1e-5)


def test_forget_subtracts_a_text_in_parallel_mode():
    model = make(encoding="parallel")
    both = model.contextualize([DOC_A]).extend([DOC_B])
    only_a = model.contextualize(DOC_A)
    forgotten = both.forget(DOC_B)
    assert forgotten.num_tokens == [len(DOC_A)]
    for key in only_a.states:
        assert torch.allclose(forgotten.states[key], only_a.states[key], atol=1e-4)
        assert torch.allclose(forgotten.factors[key][1] @ forgotten.factors[key][0],
                              only_a.factors[key][1] @ only_a.factors[key][0], atol=1e-3)
    with pytest.raises(ValueError, match="never added"):
        forgotten.forget(DOC_B)


def test_forget_is_refused_in_sequential_mode():
    model = make(encoding="sequential")
    ctx = model.contextualize(DOC_A)
    with pytest.raises(ValueError, match="parallel"):
        ctx.forget(DOC_A)


def test_compose_two_contexts():
    model = make(encoding="parallel")
    a, b = model.contextualize(DOC_A), model.contextualize(DOC_B)
    both = a + b
    joint = model.contextualize(DOC_A).extend(DOC_B)
    assert both.num_tokens == [len(DOC_A) + len(DOC_B)]
    for key in both.states:
        assert torch.allclose(both.states[key], joint.states[key], atol=1e-5)
    other = make(encoding="parallel").contextualize(DOC_A)
    with pytest.raises(ValueError, match="different generators"):
        a + other


def test_per_row_forward_matches_single_runs_and_none_rows_are_base():
    model = make()
    ca, cb = model.contextualize(DOC_A), model.contextualize(DOC_B)
    batch = GeneratedContext.stack([ca, None, cb])
    ids = torch.randint(0, 128, (3, 9))
    out = logits(model, ids, batch)
    assert torch.allclose(out[0], logits(model, ids[:1], ca)[0], atol=1e-5)
    assert torch.equal(out[1], logits(model, ids, None)[1])  # a None row adds exactly zero
    assert torch.allclose(out[2], logits(model, ids[2:], cb)[0], atol=1e-5)
    assert torch.allclose(out[2], logits(model, ids[2:], batch[2])[0], atol=1e-5)
    with pytest.raises(ValueError, match="row"):
        logits(model, ids[:2], batch)


def test_padded_batched_generate_matches_individual_generation():
    model = make()
    ca, cb = model.contextualize(DOC_A), model.contextualize(DOC_B)
    prompts = [[5, 6, 7, 8, 9], [20, 21, 22]]
    pad = 0
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=pad)
    with torch.no_grad(), model.use_context(GeneratedContext.stack([ca, cb])):
        batched = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    for i, (p, c) in enumerate(zip(prompts, (ca, cb))):
        with torch.no_grad(), model.use_context(c):
            single = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), **kwargs)
        assert batched[i, width:].tolist() == single[0, len(p):].tolist()
    with torch.no_grad(), model.use_context(ca):  # one context broadcast over beams
        model.generate(input_ids=torch.tensor([prompts[0]]), num_beams=2, max_new_tokens=3, pad_token_id=pad)


def test_two_threads_two_contexts_do_not_mix():
    model = make()
    ca, cb = model.contextualize(DOC_A), model.contextualize(DOC_B)
    model.clear_context()
    expected = {"a": logits(model, QUERY, ca), "b": logits(model, QUERY, cb)}
    results, errors = {"a": [], "b": []}, []
    barrier = threading.Barrier(2)

    def worker(name, ctx, doc):
        try:
            barrier.wait()
            for _ in range(5):
                model.contextualize(doc, activate=False)  # encoding in parallel too
                results[name].append(logits(model, QUERY, ctx))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=a) for a in (("a", ca, DOC_A), ("b", cb, DOC_B))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name in ("a", "b"):
        assert all(torch.allclose(r, expected[name], atol=1e-6) for r in results[name])
    assert model.active_context is None


def test_export_lora_reproduces_logits_and_merges(tmp_path):
    from peft import PeftModel

    model = make()
    ctx = model.contextualize(DOC_A)
    adapted = logits(model, QUERY, ctx)
    ctx.save_pretrained(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    plain = PeftModel.from_pretrained(tiny_model(), tmp_path / "lora")
    assert plain.peft_config["default"].peft_type == "LORA"
    with torch.no_grad():
        assert torch.allclose(plain(QUERY).logits, adapted, atol=1e-5)
        merged = plain.merge_and_unload()
        assert torch.allclose(merged(QUERY).logits, adapted, atol=1e-4)
    with pytest.raises(ValueError, match="single context"):
        model.contextualize([DOC_A, DOC_B]).save_pretrained(tmp_path / "x")


def test_state_save_load_and_keep_streaming(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A[:32])
    ctx.save_state(tmp_path / "user.safetensors")
    loaded = model.load_context(tmp_path / "user.safetensors")
    assert loaded.num_tokens == ctx.num_tokens
    for key in ctx.states:
        assert torch.equal(loaded.states[key], ctx.states[key])
    more = loaded.extend(DOC_A[32:])
    whole = model.contextualize(DOC_A)
    for key in whole.states:
        assert torch.allclose(more.states[key], whole.states[key], atol=1e-5)


def test_state_from_another_generator_or_corrupt_is_refused(tmp_path):
    model = make()
    ctx = model.contextualize(DOC_A)
    path = tmp_path / "ctx.safetensors"
    ctx.save_state(path)
    other = make(key_dim=12, value_dim=12, rank=4)
    with pytest.raises(ValueError, match="different generator"):
        other.load_context(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt|truncated"):
        model.load_context(path)
    # a failed save leaves the old file in place
    good = tmp_path / "good.safetensors"
    ctx.save_state(good)
    before = good.read_bytes()
    ctx.states["bad"] = object()
    with pytest.raises(Exception):
        ctx.save_state(good)
    assert good.read_bytes() == before


def test_text_contexts_and_tokenizer_checks():
    model = make()

    class TinyTokenizer:  # a real tokenizer is used in the real-model tests; here ids must fit vocab 128
        bos_token_id = None

        def __len__(self):
            return 128

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [3 + (ord(c) % 120) for c in text]}

    ctx = model.contextualize(["hello world", "a longer second document, longer than one window"],
                              tokenizer=TinyTokenizer())
    assert ctx.num_tokens == [11, 48]

    class BigTokenizer(TinyTokenizer):
        def __len__(self):
            return 50000

    with pytest.raises(ValueError, match="does not belong"):
        model.contextualize("hello", tokenizer=BigTokenizer())
    with pytest.raises(ValueError, match="tokenizer"):
        model.contextualize("hello")


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("", ValueError, "empty"),
        ([], ValueError, "No context"),
        ([[1, 2], []], ValueError, "empty"),
        ([1, 2, 500], ValueError, "vocabulary"),
        (torch.randn(2, 3), ValueError, "integer"),
        (3.5, TypeError, "Cannot contextualize"),
    ],
)
def test_bad_context_input(bad, error, match):
    model = make()

    class Tok:
        bos_token_id = None

        def __len__(self):
            return 128

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [5 for _ in text]}

    with pytest.raises(error, match=match):
        model.contextualize(bad, tokenizer=Tok())


def test_max_context_tokens_guard():
    model = make(max_context_tokens=20)
    with pytest.raises(ValueError, match="max_context_tokens"):
        model.contextualize(DOC_A)
    ctx = model.contextualize(DOC_A[:15])
    with pytest.raises(ValueError, match="max_context_tokens"):
        ctx.extend(DOC_A[15:])


def test_nan_hidden_states_give_a_clear_error():
    model = make()
    with torch.no_grad():
        model.get_base_model().model.embed_tokens.weight[5] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        model.contextualize([5, 6, 7])
