"""Devices and dtypes: the paths that matter on a GPU, each checked against the fp32 result on the CPU.

Every test runs for each target of `TARGETS`: ("cpu", bfloat16) everywhere, so CI exercises the bf16 paths, and
("cuda", float32) / ("cuda", bfloat16) where a GPU is present (skipped with the reason where not; on a GPU machine
`scripts/device_check.sh` runs this file). Tiny random models: the whole file takes seconds.

Agreement with the fp32 CPU result is measured as a relative Frobenius error, `||got - ref|| / ||ref||`, of the
adapters' `delta_W = lora_B @ lora_A` (the SVD factors themselves are defined only up to sign) and of logits; bf16
keeps 8 bits of mantissa, and a context's adapter passes through a whole forward pass and an SVD, so it agrees to
about 1-2.5 % on the CPU (measured), and `TOLERANCE` allows about three times that. `N = U_k V_k^T` gives each kept
singular direction the same weight, so how well the adapter survives rounding depends on the gap between the k-th and
the next singular value of the state; `test_the_reference_states_are_well_conditioned` checks that the test data has
one (with rank = key_dim = value_dim, the smallest direction of a state with a tiny last singular value is weighted 1,
and any dtype rotates it: an error of 50 % was measured there, in fp32 against bf16 alike).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from peft import PeftModel, get_peft_model

import peft_generative as pg
from peft_generative import GeneratedContext

from .conftest import randomize_generator, tiny_model
from .host_syncs import HostSyncCounter

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: run on a GPU machine (scripts/device_check.sh)")
TARGETS = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.float32, id="cuda-fp32", marks=needs_cuda),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=needs_cuda),
]
# the largest relative error against fp32 on the CPU; fp32 on another device differs only in summation order
TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 6e-2}
RANK = 2  # of a 16 x 16 state
MIN_GAP = 0.04  # (s_k - s_k+1) / s_1 of every reference state

GEN = torch.Generator().manual_seed(0)
DOCS = [torch.randint(3, 128, (n,), generator=GEN).tolist() for n in (70, 45)]  # 3 and 2 chunks of 32 tokens
SHORT = DOCS[1][:6]  # fewer tokens than key_dim: a rank-deficient state, whose SVD gradient needs the smoothing
MORE = torch.randint(3, 128, (40,), generator=GEN).tolist()
QUESTIONS = torch.randint(3, 128, (3, 9), generator=GEN)
TARGET = torch.randint(3, 128, (2, 12), generator=GEN)


def make(encoding: str = "parallel", device="cpu", dtype=torch.float32):
    """The same tiny model and randomised generator every time (fixed seeds), moved to `device` / `dtype`."""
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=RANK, window=32,
                                        encoding=encoding, target_modules=["o_proj", "down_proj"])
    model = randomize_generator(get_peft_model(tiny_model(), config))
    return model.to(device=device, dtype=dtype)


def base_model(device, dtype):
    return tiny_model().to(device=device, dtype=dtype)


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    return ((got - ref).norm() / ref.norm()).item()


def deltas(ctx: GeneratedContext) -> dict[str, torch.Tensor]:
    return {key: lora_b @ lora_a for key, (lora_a, lora_b) in ctx.factors.items()}


def logits(model, ids: torch.Tensor, context) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(ids.to(device), context=context).logits


@pytest.fixture(scope="module")
def reference():
    """The fp32 CPU model and its contexts: what every target is compared against."""
    model = make()
    return model, model.contextualize(DOCS, activate=False, progress=False)


@pytest.mark.parametrize("encoding", ["parallel", "sequential"])
def test_the_reference_states_are_well_conditioned(encoding):
    """The precondition of every comparison below: the data, not the device, would be at fault without it."""
    ctx = make(encoding).contextualize([DOCS[0], SHORT], activate=False, progress=False)
    for key, state in ctx.states.items():
        singular = torch.linalg.svdvals(state)
        gap = (singular[:, RANK - 1] - singular[:, RANK]) / singular[:, 0]
        assert (gap >= MIN_GAP).all(), (key, gap)


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_contextualize_matches_fp32_on_the_cpu(device, dtype, reference):
    ref_model, ref_ctx = reference
    model = make(device=device, dtype=dtype)
    ctx = model.contextualize(DOCS, activate=False, progress=False)
    for key, state in ctx.states.items():
        assert state.device.type == device and state.dtype == torch.float32, key  # states always accumulate in fp32
    for (key, got), ref in zip(deltas(ctx).items(), deltas(ref_ctx).values()):
        assert got.device.type == device and got.dtype == dtype, key
        assert relative_error(got, ref) < TOLERANCE[dtype], key
    for rows in ([0], [1]):
        got = logits(model, QUESTIONS, ctx.rows(rows))
        assert relative_error(got, logits(ref_model, QUESTIONS, ref_ctx.rows(rows))) < TOLERANCE[dtype]


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_batched_per_row_forward_equals_row_by_row(device, dtype, reference):
    """Rows of one batch with different adapters (and one without) give what each row gives alone."""
    ref_model, ref_ctx = reference
    model = make(device=device, dtype=dtype)
    ctx = model.contextualize(DOCS, activate=False, progress=False)
    batch = GeneratedContext.stack([ctx[0], None, ctx[1]])
    together = logits(model, QUESTIONS, batch)
    alone = [logits(model, QUESTIONS[i:i + 1], c) for i, c in enumerate((ctx[0], None, ctx[1]))]
    for row, single in enumerate(alone):
        assert relative_error(together[row:row + 1], single) < TOLERANCE[dtype] / 3, row
    reference_rows = logits(ref_model, QUESTIONS, GeneratedContext.stack([ref_ctx[0], None, ref_ctx[1]]))
    assert relative_error(together, reference_rows) < TOLERANCE[dtype]


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_per_row_generate_follows_the_fp32_cpu_model(device, dtype, reference):
    """Greedy decoding with per-row adapters on the target: every token it picks is (within the dtype's tolerance)
    the most likely one under the fp32 CPU model with the same row's adapter, so no row got another row's adapter."""
    ref_model, ref_ctx = reference
    model = make(device=device, dtype=dtype)
    ctx = model.contextualize(DOCS, activate=False, progress=False)
    prompt = QUESTIONS.to(device)
    with torch.no_grad():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6,
                             min_new_tokens=6, do_sample=False, pad_token_id=0,
                             context=GeneratedContext.stack([ctx[0], None, ctx[1]])).cpu()
    assert out.shape == (3, QUESTIONS.shape[1] + 6)
    scores = logits(ref_model, out[:, :-1], GeneratedContext.stack([ref_ctx[0], None, ref_ctx[1]]))
    new = scores[:, QUESTIONS.shape[1] - 1:]  # the positions that predict each generated token
    chosen = new.gather(-1, out[:, QUESTIONS.shape[1]:, None]).squeeze(-1)
    spread = new.amax(-1) - new.amin(-1)
    assert ((new.amax(-1) - chosen) <= 2 * TOLERANCE[dtype] * spread).all()


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_streaming_extend_and_forget(device, dtype, reference):
    ref_model, _ = reference
    model = make(device=device, dtype=dtype)
    ctx = model.contextualize([DOCS[0]], activate=False, progress=False)
    extended = ctx.extend([MORE], progress=False)
    ref_extended = ref_model.contextualize([DOCS[0]], activate=False, progress=False).extend([MORE], progress=False)
    for (key, got), ref in zip(deltas(extended).items(), deltas(ref_extended).values()):
        assert relative_error(got, ref) < TOLERANCE[dtype], key
    # the text's contribution is computed again the same way and subtracted in fp32: the states come back
    back = extended.forget([MORE])
    for key in ctx.states:
        assert relative_error(back.states[key], ctx.states[key]) < 1e-5, key
    # forgetting every text leaves exactly the base model
    empty = back.forget([DOCS[0]])
    assert all(not state.any() for state in empty.states.values())
    assert torch.equal(logits(model, QUESTIONS, empty), logits(model, QUESTIONS, None))


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_sequential_extend_equals_one_pass(device, dtype):
    model = make("sequential", device=device, dtype=dtype)
    whole = model.contextualize([DOCS[0]], activate=False, progress=False)
    head = model.contextualize([DOCS[0][:64]], activate=False, progress=False)  # two whole windows
    streamed = head.extend([DOCS[0][64:]], progress=False)
    for key in whole.states:
        assert relative_error(streamed.states[key], whole.states[key]) < TOLERANCE[dtype] / 3, key


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_export_to_plain_lora_and_reload(device, dtype, tmp_path):
    model = make(device=device, dtype=dtype)
    ctx = model.contextualize([DOCS[0]], activate=False, progress=False)
    ctx.save_pretrained(str(tmp_path / "lora"))
    lora = PeftModel.from_pretrained(base_model(device, dtype), str(tmp_path / "lora")).eval()
    with torch.no_grad():
        exported = lora(QUESTIONS.to(device)).logits
    assert relative_error(exported, logits(model, QUESTIONS, ctx)) < TOLERANCE[dtype] / 3
    assert relative_error(exported, logits(model, QUESTIONS, None)) > 10 * TOLERANCE[dtype]  # the adapter is there


def training_step(model, autocast_dtype=None):
    """One AdamW step of the generator; returns the loss, the generator's gradients and how many of the tensors with
    a gradient the step changed, of how many. With `autocast_dtype`, the forward passes run under autocast (the
    weights stay as they are)."""
    device = next(model.parameters()).device
    params = [p for n, p in model.named_parameters() if "generator_" in n]
    for p in params:
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    before = [p.detach().clone() for p in params]
    mixed = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with mixed:
        ctx = model.contextualize([DOCS[0], SHORT], requires_grad=True, activate=False, progress=False)
        with model.use_context(ctx):
            loss = model(input_ids=TARGET.to(device), labels=TARGET.to(device)).loss
    loss.backward()  # outside autocast, as trainers do
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    updated = [not torch.equal(p, b) for p, b in zip(params, before) if p.grad is not None and p.grad.any()]
    return loss.detach().float().cpu(), grads, (sum(updated), len(updated))


@pytest.fixture(scope="module")
def reference_step():
    return training_step(make("sequential"))


def check_step(step, reference_step, dtype, every_tensor_updated=True):
    loss, grads, (updated, trained) = step
    ref_loss, ref_grads, _ = reference_step
    assert torch.isfinite(loss) and relative_error(loss, ref_loss) < TOLERANCE[dtype]
    assert grads.keys() == ref_grads.keys() and all("generator_" in n for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())  # through the SVD of a rank-deficient state too
    assert updated == trained if every_tensor_updated else updated > 0
    for name, grad in grads.items():
        ref = ref_grads[name]
        if ref.norm() > 0:
            cosine = torch.nn.functional.cosine_similarity(grad.flatten(), ref.flatten(), dim=0)
            assert cosine > 0.9, (name, cosine.item())


@pytest.mark.parametrize("device, dtype", TARGETS)
def test_one_training_step(device, dtype, reference_step):
    """The generator's weights in the target dtype. In pure bf16 an AdamW update smaller than 1/256 of a weight is
    rounded away (the norm's weights of 1.0 do not move at lr 1e-3): that is why the GPU recipe keeps fp32 weights
    under bf16 autocast (next test); here it is enough that the step moves some tensors."""
    step = training_step(make("sequential", device=device, dtype=dtype))
    check_step(step, reference_step, dtype, every_tensor_updated=dtype == torch.float32)


@pytest.mark.parametrize("device, dtype", [t for t in TARGETS if t.values[1] == torch.bfloat16])
def test_one_training_step_under_autocast(device, dtype, reference_step):
    """fp32 weights, bf16 autocast: the mixed-precision recipe (`bf16: true` in a training config)."""
    model = make("sequential", device=device)
    step = training_step(model, autocast_dtype=dtype)
    assert all(g.dtype == torch.float32 for g in step[1].values())
    check_step(step, reference_step, dtype)


@pytest.mark.parametrize("encoding", ["parallel", "sequential"])
def test_host_syncs_do_not_grow_with_the_adapted_modules(encoding):
    """Each read of a device value on the host (`.item()`, `.tolist()`, `bool(tensor)`, boolean indexing) stalls a
    GPU's queue of kernels. Contextualizing may read the device once per chunk, never once per adapted module; a
    forward pass with an adapter never."""

    def count(target_modules, layers=None):
        config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=8, value_dim=8, rank=8, window=32,
                                            encoding=encoding, target_modules=target_modules,
                                            layers_to_transform=layers)
        model = randomize_generator(get_peft_model(tiny_model(), config))
        model.contextualize(DOCS, activate=False, progress=False)  # warm-up: lazily built state stays out
        with HostSyncCounter() as encoding_syncs:
            ctx = model.contextualize(DOCS, activate=False, progress=False)
        with HostSyncCounter() as forward_syncs:
            logits(model, QUESTIONS[:2], ctx)
        return encoding_syncs.count, forward_syncs.count

    one = count(["o_proj"], layers=[0])
    many = count(["o_proj", "down_proj", "q_proj", "v_proj"])  # 12 modules in 3 layers
    chunks = 3  # DOCS in windows of 32 tokens
    assert many == one and one[0] <= 4 * chunks and one[1] == 0, (one, many)


@pytest.mark.parametrize("device, dtype", [t for t in TARGETS if t.values[1] == torch.bfloat16])
def test_a_short_context_keeps_only_its_own_directions_under_autocast(device, dtype):
    """A context of 6 tokens writes a state of rank 6, and its adapter has 6 directions (the rest are exactly zero),
    under bf16 autocast too: the state is summed in fp32, where rounding leaves the other singular values at ~1e-8 of
    the largest, below `svd_tol`; a bf16 sum would leave them at ~1e-3, and each would become a whole direction."""
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=16, window=32,
                                        target_modules=["o_proj", "down_proj"])
    model = randomize_generator(get_peft_model(tiny_model(), config)).to(device)
    with torch.autocast(device, dtype=dtype):
        ctx = model.contextualize([SHORT], activate=False, progress=False)
    for key, (lora_a, _) in ctx.factors.items():
        assert int((lora_a[0].abs().sum(-1) > 0).sum()) == len(SHORT), key


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_the_copy_capability_script_trains_and_resumes_on_the_device(device, tmp_path):
    """`examples/scripts/fact_capability.py --device`: its answer NLL on the device equals the CPU's, and a checkpoint
    resumed there puts Adam's moments beside their parameters, so the next step runs (the copy curriculum on a GPU)."""
    from .conftest import load_example_script

    script = load_example_script("fact_capability")
    assert script.parse(["--name", "x", "--device", device, "--max-steps", "3"]).max_steps == 3

    def fresh():
        config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=8, value_dim=8, rank=4, window=32)
        model = randomize_generator(get_peft_model(tiny_model(), config))
        for name, param in model.named_parameters():
            param.requires_grad_("generator_" in name)
        model = model.to(device)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    rows = [(DOCS[1][:12], [-100] * 8 + DOCS[1][8:12]), (DOCS[0][:9], [-100] * 6 + DOCS[0][6:9])]
    reference, _ = fresh()
    reference = reference.to("cpu")
    with reference.use_context(reference.contextualize([MORE], activate=False).rows([0, 0])):
        want, want_count = script.answer_nll(reference, rows, 0)

    model, optimizer = fresh()
    ctx = model.contextualize([MORE], requires_grad=True, activate=False)
    with model.use_context(ctx.rows([0, 0])):
        nll, count = script.answer_nll(model, rows, 0)
    assert nll.device.type == device and torch.equal(count.cpu(), want_count)
    torch.testing.assert_close(nll.detach().cpu(), want, rtol=2e-3, atol=2e-3)
    (nll.sum() / count.sum()).backward()
    optimizer.step()
    script.save(tmp_path, model, optimizer, {"step": 1, "cpu": 1.0, "wall": 1.0, "probes": []})

    again, again_optimizer = fresh()
    assert script.restore(tmp_path, again, again_optimizer)["step"] == 1
    for param in again_optimizer.param_groups[0]["params"]:
        assert again_optimizer.state[param]["exp_avg"].device == param.device
    ctx = again.contextualize([MORE], requires_grad=True, activate=False)
    with again.use_context(ctx.rows([0, 0])):
        loss = script.answer_nll(again, rows, 0)[0].sum()
    loss.backward()
    again_optimizer.step()  # fails if a moment stayed on another device
    assert all(torch.isfinite(p).all() for p in again_optimizer.param_groups[0]["params"])
