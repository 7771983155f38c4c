"""Real text in the copy curriculum (fact_capability `--prose-share`, `--text-share`): real prose passages asked their
cloze questions, and pretraining text blocks with the generator's own completion and reconstruction targets."""

import json

import pytest
import torch

from .conftest import load_example_script

PROSE = ["The plant moved to Leeds in 1998, and its owners, Harrow and Finch, kept forty workers there.",
         "Marta Velasquez won the regional final in 2011 after three rounds against the champion."]
WORDS = ("river", "ledger", "harbour", "quietly", "compiler", "ballot", "seventeen", "lantern", "Tuesday", "orchard")


def long_text(seed: int) -> str:
    words = [WORDS[(seed * 7 + i * i) % len(WORDS)] for i in range(900)]
    return " ".join(words) + "."


@pytest.fixture
def fc(tmp_path, monkeypatch):
    """The script with small real-text files of its two formats in place of data/."""
    module = load_example_script("fact_capability")
    prose = tmp_path / "prose.jsonl"
    rows = [{"id": f"news/{i}#0", "context": text, "prompt": f'What goes in the blank: "{text.replace(answer, "___")}"',
             "completion": answer, "type": "cloze", "kind": kind}
            for i, text in enumerate(PROSE) for answer, kind in (("1998", "digits"), ("Leeds", "name"),
                                                                 ("2011", "digits"), ("Marta Velasquez", "name"))
            if answer in text]
    prose.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["too short"] + [long_text(i) for i in range(3)]))
    monkeypatch.setattr(module, "PROSE_TRAIN", prose)
    monkeypatch.setattr(module, "TEXT_TRAIN", text)
    return module


FLAGS = ["--name", "x", "--data", "words", "--word-entities", "1-2", "--key-conv", "2", "--value-lookahead", "1"]


def test_the_mixture_replaces_a_share_of_documents_and_leaves_the_others_as_they_were(fc):
    plain = fc.parse(FLAGS)
    mixed = fc.parse(FLAGS + ["--prose-share", "0.25", "--text-share", "0.125"])
    kinds = {"prose": 0, "text": 0, "synthetic": 0}
    for i in range(400):
        doc = fc.train_document(i, mixed)
        kind = "text" if "text" in doc else "prose" if doc["id"].startswith("prose:") else "synthetic"
        kinds[kind] += 1
        if kind == "synthetic":  # the synthetic documents keep their own draws
            assert doc == fc.train_document(i, plain)
    assert 70 <= kinds["prose"] <= 130 and 25 <= kinds["text"] <= 75, kinds
    passages = fc.prose_passages(fc.PROSE_TRAIN)
    assert len(passages) == 2 and [len(p["questions"]) for p in passages] == [2, 2]  # questions grouped by passage
    assert fc.train_document(7, mixed) == fc.train_document(7, mixed)  # deterministic


def test_a_text_block_predicts_its_next_segment_and_a_window_of_itself(fc, tokenizer):
    args = fc.parse(FLAGS + ["--text-share", "1", "--text-segment", "32"])
    doc = fc.train_document(3, args)
    assert doc["questions"] == [] and len(doc["text"]) <= 12 * 3 * 32
    context, rows = fc.document_rows(tokenizer, doc, args)
    ids = tokenizer(doc["text"], add_special_tokens=False)["input_ids"]
    (completion, completion_labels), (window, window_labels) = rows
    assert context == tokenizer.decode(ids[:64])
    assert completion == ids[64:96]
    start = next(s for s in range(33) if ids[s: s + 32] == window)  # a 32-token window of the context
    assert start + 32 <= 64
    for row, labels in rows:  # every target token is predicted but the row's first
        assert labels[0] == -100 and labels[1:] == row[1:]


def test_text_targets_weigh_text_weight_answer_tokens_and_pack_exactly(fc):
    """On one batch of a word document and a text block: the text targets' NLL and count scale with --text-weight
    (the answers' do not), 2 x 23 text tokens are labelled, and packing gives the loss of separate rows."""
    def flags(weight, *extra):
        return fc.parse(FLAGS + ["--text-share", "0.5", "--text-segment", "24", "--text-weight", weight, *extra])

    model, tok = fc.build(flags("1"))
    docs = [fc.train_document(i, flags("1")) for i in range(50)]
    batch = [next(d for d in docs if "text" not in d), next(d for d in docs if "text" in d)]
    with torch.no_grad():
        (s1, n1), (s2, n2), (s4, n4) = (fc.training_nll(model, tok, batch, flags(w)) for w in ("1", "0.5", "0.25"))
        loss = fc.training_loss(model, tok, batch, flags("0.25")).item()
        packed = fc.training_loss(model, tok, batch, flags("0.25", "--pack-questions")).item()
    assert (n1 - n2).item() == pytest.approx(0.5 * 2 * 23) and (n2 - n4).item() == pytest.approx(0.25 * 2 * 23)
    assert (s1 - s2).item() == pytest.approx(2 * (s2 - s4).item(), rel=1e-5)  # linear in the weight
    assert loss == pytest.approx((s4 / n4).item(), rel=1e-6)
    assert packed == pytest.approx(loss, rel=1e-4)  # the text rows packed behind no shared prefix: the same loss
    text = batch[1]
    context = fc.document_rows(tok, text, flags("1"))[0]
    assert fc.data_tokens(tok, [text], flags("1")) == len(tok(context, add_special_tokens=False)["input_ids"]) + 48


def test_real_text_flags_refuse_what_cannot_work(fc, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        fc.parse(FLAGS + ["--prose-share", "0.7", "--text-share", "0.5"])
    assert "summing to at most 1" in capsys.readouterr().err
    monkeypatch.setattr(fc, "TEXT_TRAIN", tmp_path / "missing.jsonl")
    with pytest.raises(SystemExit):
        fc.parse(FLAGS + ["--text-share", "0.1"])
    assert "--pretraining --no-exclude --out data" in capsys.readouterr().err
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"text": "only a few words"}) + "\n")
    with pytest.raises(SystemExit, match="no document of 3000 characters"):
        fc.text_documents(short)
