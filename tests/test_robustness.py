"""Issue 24: nothing lost, nothing silent: forgetting, stale or foreign memories, broken generators, exports, threads
and interrupted checkpoints."""

import copy
import json
import os
import stat
import threading

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from transformers import TextIteratorStreamer

import peft_generative as pg
from peft_generative import GeneratedContext
from peft_generative.loading import load_generative_model
from peft_generative.training.checkpoints import last_complete_checkpoint
from peft_generative.utils.atomic import atomic_directory

from .conftest import randomize_generator, tiny_model

DOC_A = list(range(3, 50))
DOC_B = list(range(60, 90))
QUERY = torch.tensor([[7, 8, 9, 10, 11, 12]])


def make(kind="llama", seed=1, **kwargs):
    defaults = dict(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=16)
    defaults.update(kwargs)
    return randomize_generator(get_peft_model(tiny_model(kind), pg.GenerativeAdapterConfig(**defaults)), seed=seed)


def logits(model, ids=QUERY, **kwargs):
    with torch.no_grad():
        return model(ids, **kwargs).logits


# ---- 1. forgetting everything gives exactly the base model --------------------------------------------------------
def test_forgetting_every_text_leaves_exactly_the_base_model():
    model = make(encoding="parallel")
    with model.use_context(None):
        base = logits(model)
    ctx = model.contextualize(DOC_A, activate=False).extend(DOC_B).forget(DOC_B).forget(DOC_A)
    assert ctx.num_tokens == [0]
    assert all(not s.any() for s in ctx.states.values())
    assert all(not a.any() and not b.any() for a, b in ctx.factors.values())
    assert torch.equal(logits(model, context=ctx), base)


# ---- 2. memories are bound to the generator's weights --------------------------------------------------------------
def test_state_saved_by_another_generator_with_the_same_shapes_is_refused(tmp_path):
    first, second = make(seed=1), make(seed=2)
    path = tmp_path / "memory.safetensors"
    first.contextualize(DOC_A, activate=False).save_state(str(path))
    pg.generator_of(first).source = "gen-v1"
    first.contextualize(DOC_A, activate=False).save_state(str(path))
    pg.generator_of(second).source = "gen-v2"
    with pytest.raises(ValueError, match="made by generator 'gen-v1'.*this model's generator is 'gen-v2'"):
        second.load_context(str(path))
    assert first.load_context(str(path), activate=False).num_tokens == [len(DOC_A)]


def test_context_made_before_the_weights_changed_is_refused():
    model = make()
    ctx = model.contextualize(DOC_A, activate=False)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "generator_B" in n).mul_(1.5)  # e.g. an optimizer step
    with pytest.raises(RuntimeError, match="before the generator's weights changed"):
        logits(model, context=ctx)
    fresh = model.contextualize(DOC_A, activate=False)
    logits(model, context=fresh)
    with pytest.raises(ValueError, match="different versions"):
        GeneratedContext.stack([ctx, fresh])


# ---- 5. NaN/inf generators are refused and named -------------------------------------------------------------------
def test_generator_with_nan_weights_is_refused_on_load(tmp_path, tokenizer_for_tiny):
    model = make()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "generator_A1" in n)[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "broken")
    base_dir = tmp_path / "base"
    tiny_model().save_pretrained(base_dir)
    tokenizer_for_tiny.save_pretrained(base_dir)
    with pytest.raises(ValueError, match=r"generator .*broken.* has NaN or inf weights .*base model is fine"):
        load_generative_model(str(base_dir), str(tmp_path / "broken"))


def test_non_finite_factors_are_refused_when_generated():
    model = make()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "generator_B" in n).fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="generator"):
        model.contextualize(DOC_A, activate=False)


# ---- 6. exports are atomic, leave nothing behind and follow the umask ----------------------------------------------
def test_export_replaces_an_existing_adapter_whole_and_is_readable_by_others(tmp_path):
    model = make()
    out = tmp_path / "lora"
    model.contextualize(DOC_A, activate=False).save_pretrained(str(out))
    (out / "notes.txt").write_text("mine")
    first = load_file(out / "adapter_model.safetensors")
    model.contextualize(DOC_B, activate=False).save_pretrained(str(out))
    second = load_file(out / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert (out / "notes.txt").read_text() == "mine"  # files the export does not write are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]  # no temporary or old directory left behind
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "adapter_model.safetensors").stat().st_mode) & 0o044 == 0o644 & 0o044 & ~mask


def test_a_failed_export_leaves_the_old_one_and_no_temporary_directory(tmp_path):
    out = tmp_path / "lora"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(out) as tmp:
            (tmp / "adapter_model.safetensors").write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json"]


# ---- 7. contexts of other models, row counts, crafted files, copies, bad arguments ---------------------------------
def test_forget_refuses_a_context_of_another_model():
    a, b = make(encoding="parallel"), make(encoding="parallel")
    ctx = a.contextualize(DOC_A, activate=False)
    with pytest.raises(ValueError, match="another model or generator"):
        b.forget(ctx, DOC_A)


def test_row_counts_must_match_the_batch_except_one_context_or_generate_expansion():
    model = make()
    two = model.contextualize([DOC_A, DOC_B], activate=False)
    with pytest.raises(ValueError, match="2 row\\(s\\) but the batch has 4"):
        logits(model, QUERY.repeat(4, 1), context=two)
    one = model.contextualize(DOC_A, activate=False)
    assert logits(model, QUERY.repeat(4, 1), context=one).shape[0] == 4
    # beam search expands each input row: one context row per input row is right
    out = model.generate(input_ids=QUERY.repeat(2, 1), attention_mask=torch.ones(2, 6, dtype=torch.long),
                         context=two, num_beams=2, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape[0] == 2


def test_crafted_state_files_are_refused_with_a_reason(tmp_path):
    model = make()
    path = tmp_path / "m.safetensors"
    model.contextualize([DOC_A, DOC_B], activate=False).save_state(str(path))
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["peft_generative"])

    def write(tensors, meta):
        save_file(tensors, str(path), metadata={"peft_generative": json.dumps(meta)})

    key = next(iter(tensors))
    write({**tensors, key: tensors[key][:1]}, meta)
    with pytest.raises(ValueError, match="shape"):
        model.load_context(str(path))
    write(tensors, {**meta, "num_tokens": [5]})
    with pytest.raises(ValueError, match="one entry per row"):
        model.load_context(str(path))
    write(tensors, {k: v for k, v in meta.items() if k != "added_texts"})
    with pytest.raises(ValueError, match="lacks"):
        model.load_context(str(path))
    write({**tensors, "state.extra": tensors[key].clone()}, meta)
    with pytest.raises(ValueError, match="does not have"):
        model.load_context(str(path))


def test_deepcopy_does_not_carry_the_originals_context():
    model = make()
    model.set_context(model.contextualize(DOC_A, activate=False))
    twin = copy.deepcopy(model)
    assert twin.active_context is None
    with model.use_context(None):
        base = logits(model)
    assert torch.equal(logits(twin), base)


def test_bad_arguments_get_clear_messages():
    model = make()
    ctx = model.contextualize(DOC_A, activate=False)
    with pytest.raises(TypeError, match="must be a GeneratedContext"):
        model.contextualize(DOC_B, extend="more text")
    with pytest.raises(TypeError, match="must be a GeneratedContext"):
        with model.use_context("a document"):
            pass
    with pytest.raises(TypeError, match="not a GeneratedContext"):
        GeneratedContext.stack([ctx, "x"])
    with pytest.raises(ValueError, match="integer"):
        model.contextualize(torch.tensor([[True, False, True]]), activate=False)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        model.contextualize([[True, 5, 6]], activate=False)
    with pytest.raises(TypeError, match="integers"):
        ctx.rows(torch.tensor([True]))


# ---- 8. the context across threads ---------------------------------------------------------------------------------
def test_contextualize_activates_for_the_calling_thread_only():
    model = make()
    ctx_a = model.contextualize(DOC_A, activate=False)
    model.set_context(ctx_a)  # a server's model-wide default
    seen = {}

    def other_thread():
        seen["before"] = model.active_context
        model.contextualize(DOC_B)  # activates for that thread only
        seen["after"] = model.active_context

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert seen["before"] is ctx_a and seen["after"] is not ctx_a
    assert model.active_context is ctx_a


def test_streaming_generate_in_a_new_thread_uses_the_per_call_context(tokenizer_for_tiny):
    model = make()
    ctx = model.contextualize(DOC_A, activate=False)
    kwargs = dict(input_ids=QUERY, attention_mask=torch.ones_like(QUERY), max_new_tokens=8, do_sample=False,
                  pad_token_id=0)
    expected = model.generate(**kwargs, context=ctx)[0, QUERY.shape[1]:]
    with model.use_context(None):
        base = model.generate(**kwargs)[0, QUERY.shape[1]:]
    assert not torch.equal(expected, base)  # the context changes the answer
    streamer = TextIteratorStreamer(tokenizer_for_tiny, skip_prompt=True)
    thread = threading.Thread(target=model.generate, kwargs=dict(**kwargs, streamer=streamer, context=ctx))
    with model.use_context(None):  # the caller's own block does not reach the new thread; `context=` does
        thread.start()
        streamed = "".join(streamer)
        thread.join()
    assert streamed == tokenizer_for_tiny.decode(expected)


@pytest.fixture
def tokenizer_for_tiny():
    """A character-level tokenizer over the tiny models' 128 ids, enough for the streamer to decode."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    vocab = {chr(0x100 + i): i for i in range(128)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token=chr(0x100))))


# ---- 9. an interrupted checkpoint is never resumed from ------------------------------------------------------------
def test_half_written_checkpoint_is_skipped(tmp_path):
    for step, state in ((10, '{"global_step": 10}'), (20, '{"global_step": 20}'), (30, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-40").mkdir()  # killed before the state was written
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None
