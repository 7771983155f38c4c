"""Questions packed behind one shared prefix give the loss and gradients of the separate rows."""

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig

import peft_generative as pg
from peft_generative.training.question_packing import pack_group, pack_questions, shared_prefix_length
from peft_generative.utils.batching import pad_rows

from .conftest import TINY, randomize_generator

PREFIX = [5, 6, 7, 8, 9, 10]


def row(question: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
    ids = PREFIX + question + answer
    return ids, [-100] * (len(PREFIX) + len(question)) + answer


def test_pack_group_layout():
    rows = [row([20, 21], [30, 31]), row([22], [32])]
    ids, labels, positions, segment = pack_group(rows)
    assert shared_prefix_length(rows) == len(PREFIX)
    assert ids == PREFIX + [20, 21, 30, 31, 22, 32]
    assert labels == [-100] * 6 + [-100, -100, 30, 31, -100, 32]
    assert positions == list(range(6)) + [6, 7, 8, 9, 6, 7]
    assert segment == [0] * 6 + [1, 1, 1, 1, 2, 2]


def test_the_prefix_stops_before_a_labelled_token():
    """Rows that differ only in their answer: every suffix still opens with an unlabelled token."""
    rows = [row([20], [30]), row([20], [31])]
    prefix = shared_prefix_length(rows)
    assert prefix == len(PREFIX)  # [20] is shared but the answer follows it: it stays in each suffix
    _, labels, _, segment = pack_group(rows)
    for j in (1, 2):
        first = segment.index(j)
        assert labels[first] == -100


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="labels"):
        pack_group([([1, 2, 3], [-100, 3])])


def test_mask_lets_a_suffix_see_the_prefix_and_itself_only():
    mask = pack_questions([[row([20], [30]), row([22], [32])]], pad_id=0)["attention_mask"][0, 0]
    seen = mask == 0
    second_answer = len(PREFIX) + 3  # prefix, [20, 30], [22, 32]: the 32
    assert seen[second_answer, : len(PREFIX)].all()
    assert not seen[second_answer, len(PREFIX): len(PREFIX) + 2].any()  # the first question's tokens
    assert seen[second_answer, len(PREFIX) + 2: second_answer + 1].all()
    assert not seen[second_answer, second_answer + 1:].any()


def groups_of_rows(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    draw = lambda n: torch.randint(11, 128, (n,), generator=gen).tolist()  # noqa: E731
    return [[row(draw(3), draw(2)), row(draw(5), draw(3)), row(draw(2), draw(1))],
            [row(draw(4), draw(4))],
            [row(draw(2), draw(2)), row(draw(6), draw(1))]]


def loss_and_grads(model, groups, packed: bool):
    generator = pg.generator_of(model)
    docs = [list(range(3 + 7 * i, 40 + 5 * i)) for i in range(len(groups))]
    model.zero_grad(set_to_none=True)
    ctx = model.contextualize(docs, requires_grad=True, activate=False, progress=False)
    if packed:
        batch, rows = pack_questions(groups, pad_id=0), list(range(len(groups)))
    else:
        flat = [(i, r) for i, g in enumerate(groups) for r in g]
        batch = pad_rows([r[0] for _, r in flat], 0, labels=[r[1] for _, r in flat])
        batch["position_ids"], rows = None, [i for i, _ in flat]
    with model.use_context(ctx.rows(rows)):
        logits, target, _ = generator.labelled_logits(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                                      position_ids=batch["position_ids"])
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_rows_train_exactly_like_separate_rows(attention):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(LlamaConfig(**TINY), attn_implementation=attention).eval()
    base.config._name_or_path = "tiny-random-llama"
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=64,
                                        encoding="parallel", key_conv=1, value_lookahead=1)
    model = randomize_generator(get_peft_model(base, config), std=0.05)
    model.train()
    groups = groups_of_rows()
    loss_rows, grads_rows = loss_and_grads(model, groups, packed=False)
    loss_packed, grads_packed = loss_and_grads(model, groups, packed=True)
    assert torch.allclose(loss_rows, loss_packed, rtol=1e-5), (loss_rows, loss_packed)
    assert grads_rows.keys() == grads_packed.keys() and grads_rows
    for name in grads_rows:
        assert torch.allclose(grads_rows[name], grads_packed[name], atol=1e-6, rtol=1e-4), name
    # and the packed batch is smaller: the prefix is computed once per group
    flat_tokens = sum(len(r[0]) for g in groups for r in g)
    assert sum(len(pack_group(g)[0]) for g in groups) == flat_tokens - len(PREFIX) * (6 - 3)
