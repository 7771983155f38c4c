"""Synthetic word documents: determinism, held-out words / relations / phrasings, answer invariants, the demo kept
out of training, the command line (a few seconds; Faker's lists are read, nothing is downloaded)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

pytest.importorskip("faker")

from peft_generative.data import build_synthetic_words_dataset, read_jsonl  # noqa: E402
from peft_generative.data.synthetic_words import (  # noqa: E402
    DEMO_WORDS,
    FILLER,
    HELD_OUT_RELATIONS,
    KINDS,
    NAME_NEEDLE_QUESTIONS,
    NAME_NEEDLE_STATEMENTS,
    NEEDLE_QUESTIONS,
    NEEDLE_STATEMENTS,
    PLACE_NEEDLE_QUESTIONS,
    PLACE_NEEDLE_STATEMENTS,
    RELATION,
    RELATIONS,
    held_out_word,
    multi_needle_document,
    neutral_words,
    word_document,
    word_lists,
    word_needle_document,
)

N_DOCS = 200  # documents per split for the invariants
DEMO = {w.lower() for w in DEMO_WORDS} | {"agnes", "ines", "oswin", "ferry", "lighthouse", "library"}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def content(text: str) -> set[str]:
    return {w for w in words(text) if w not in neutral_words()}


def occurrences(answer: str, text: str) -> int:
    return len(re.findall(rf"(?<![\w-]){re.escape(answer)}(?![\w-])", text, flags=re.IGNORECASE))


def template_regex(template: str) -> re.Pattern:
    """A statement or question template as a regex matching any filled-in sentence."""
    return re.compile("(.+?)".join(re.escape(part) for part in re.split(r"\{[a-z]\}", template)))


@pytest.fixture(scope="module")
def documents():
    docs = {split: [word_document(split, i) for i in range(N_DOCS)] for split in ("train", "validation", "test")}
    docs.update({f"{split}_unseen": [word_document(split, i, unseen=True) for i in range(N_DOCS)]
                 for split in ("validation", "test")})
    docs["train_needles"] = [word_needle_document("train", i) for i in range(N_DOCS)]
    docs["test_needles"] = [word_needle_document("test", i) for i in range(N_DOCS)]
    return docs


def test_lists_are_large_real_words_split_for_good_by_a_hash():
    lists = word_lists()
    assert set(lists) == {"first", "last", "job", "colour", "noun", "language", "country", "city", "region"}
    sizes = {name: (len(v["train"]), len(v["held_out"])) for name, v in lists.items()}
    assert sizes["first"][0] > 800 and sizes["last"][0] > 2000 and sizes["noun"][0] > 600 and sizes["city"][0] > 700
    assert sizes["job"][0] > 200 and sizes["country"][0] > 100 and min(train for train, _ in sizes.values()) > 90
    for name in ("first", "last", "noun", "city"):  # one-word lists: a quarter held out
        train, held = sizes[name]
        assert 0.18 < held / (train + held) < 0.32, name
    for name, sides in lists.items():
        assert not set(sides["train"]) & set(sides["held_out"]), name
        assert all(not any(held_out_word(w) for w in content(v)) for v in sides["train"]), name
        assert all(any(held_out_word(w) for w in content(v)) for v in sides["held_out"]), name
        assert not any(content(v) & DEMO for side in sides.values() for v in side), name
    assert {"Smith", "Emma", "teacher"} & (set(lists["last"]["train"]) | set(lists["first"]["train"])
                                           | set(lists["job"]["train"]))


def test_relations_held_out_phrasings_and_templates():
    assert 0.2 <= len(HELD_OUT_RELATIONS) / len(RELATIONS) <= 0.3
    for kind in KINDS:
        of_kind = [r.name for r in RELATIONS if r.kind == kind]
        assert 1 <= len(set(of_kind) & HELD_OUT_RELATIONS) <= len(of_kind) / 3 + 1, kind
    for entity in ("person", "company", "ship"):  # every entity keeps relations to train on
        assert len([r for r in RELATIONS if r.entity == entity and r.name not in HELD_OUT_RELATIONS]) >= 4
    assert len(RELATIONS) == len(RELATION) >= 30
    for r in RELATIONS:
        assert len(r.statements) >= 3 and len(r.questions) >= 3, r.name
        assert len(set(r.statements)) == len(r.statements) and len(set(r.questions)) == len(r.questions)
        assert all("{v}" in s and "{e}" in s for s in r.statements) and all("{e}" in q for q in r.questions)
        assert all("{v}" not in q for q in r.questions)
    assert len(NEEDLE_STATEMENTS) >= 3 and len(NEEDLE_QUESTIONS) >= 3
    # the demo's words are in no template or filler sentence
    assert not neutral_words() & DEMO


def test_documents_are_deterministic_and_depend_on_the_seed():
    for split in ("train", "test"):
        assert word_document(split, 7) == word_document(split, 7)
        assert word_document(split, 7, seed=1) != word_document(split, 7)
        assert word_needle_document(split, 7) == word_needle_document(split, 7)
    assert word_document("test", 7, unseen=True) == word_document("test", 7, unseen=True)
    assert word_document("test", 7, unseen=True)["id"] != word_document("test", 7)["id"]


def test_answers_occur_once_in_the_context_never_in_the_question(documents):
    for name, docs in documents.items():
        needle = "needles" in name
        for doc in docs:
            context, questions = doc["context"], doc["questions"]
            assert isinstance(doc["id"], str) and context.strip()
            assert (len(questions) == 1) if needle else (3 <= len(questions) <= 6), doc["id"]
            if not needle:  # 80-260 tokens (SmolLM2's tokenizer; about 1.0-1.1 tokens per word here)
                assert 45 <= len(context.split()) <= 175, doc["id"]
                assert not any(s in context for s in ("  ", " .")) and context[0].isupper()
            answers = [q["answers"][0] for q in questions]
            assert len(set(a.lower() for a in answers)) == len(answers), doc["id"]  # never two entities, one value
            for q in questions:
                answer = q["answers"][0]
                assert set(q) == {"question", "answers", "type", "kind"} and len(q["answers"]) == 1
                assert answer in context and occurrences(answer, context) == 1, (doc["id"], answer)
                assert occurrences(answer, q["question"]) == 0, (doc["id"], answer)
                assert q["kind"] in KINDS and q["question"].endswith("?")
                assert (q["kind"] == "digits") == answer.isdigit(), (doc["id"], answer)
                if needle:
                    assert q["type"] == "needle_word" and q["kind"] == "word"
                else:
                    assert RELATION[q["type"]].kind == q["kind"]
                    assert content(q["question"]), q  # the entity is named in the question


def test_training_never_sees_a_held_out_word_relation_phrasing_or_demo_word(documents):
    train = documents["train"] + documents["train_needles"]
    train_words = {w for d in train for w in content(d["context"] + " " + " ".join(
        q["question"] + " " + q["answers"][0] for q in d["questions"]))}
    assert train_words and not any(held_out_word(w) for w in train_words)  # (a) no held-out word anywhere
    assert not train_words & DEMO and not {w for d in train for w in words(d["context"])} & DEMO
    assert not {q["type"] for d in documents["train"] for q in d["questions"]} & HELD_OUT_RELATIONS  # (b)
    # (b) held-out relations are not even stated: no training sentence has the form of one of their statements
    # (but for a form shared with a training relation: "{e} was born in {v}." states a birth year too)
    shared = {t for r in RELATIONS if r.name not in HELD_OUT_RELATIONS for t in r.statements}
    held_forms = [template_regex(t) for r in RELATIONS if r.name in HELD_OUT_RELATIONS for t in r.statements
                  if t not in shared]
    train_sentences = [s for d in documents["train"] for s in re.split(r"(?<=[.?])\s+|\n", d["context"])]
    assert not [s for s in train_sentences if any(p.fullmatch(s) for p in held_forms)]
    assert not {"sailors", "hull", "launched", "afloat", "parrot", "goldfish", "tortoise"} & \
        {w for d in documents["train"] for w in words(d["context"])}
    unseen_sentences = [s for d in documents["test_unseen"] for s in re.split(r"(?<=[.?])\s+|\n", d["context"])]
    assert sum(any(p.fullmatch(s) for p in held_forms) for s in unseen_sentences) > len(documents["test_unseen"])
    # (c) the last phrasing of every sentence and question is reserved for validation/test
    reserved_only = {t for r in RELATIONS for t in (r.statements[-1], r.questions[-1])} - \
        {t for r in RELATIONS for t in r.statements[:-1] + r.questions[:-1]}
    patterns = [template_regex(t) for t in reserved_only]
    sentences = train_sentences + [q["question"] for d in documents["train"] for q in d["questions"]]
    assert not [s for s in sentences if any(p.fullmatch(s) for p in patterns)]
    needle_reserved = [template_regex(NEEDLE_STATEMENTS[-1]), template_regex(NEEDLE_QUESTIONS[-1])]
    assert not [s for d in documents["train_needles"] for s in re.split(r"(?<=[.?])\s+", d["context"])
                + [d["questions"][0]["question"]] if any(p.fullmatch(s) for p in needle_reserved)]
    # a training answer hardly repeats (colours are the one short list)
    answers = [q["answers"][0] for d in documents["train"] for q in d["questions"]
               if q["kind"] != "digits" and "colour" not in q["type"]]
    assert len(set(answers)) > 0.9 * len(answers)
    kinds = Counter(q["kind"] for d in documents["train"] for q in d["questions"])
    assert set(kinds) == set(KINDS) and 0.18 < kinds["digits"] / sum(kinds.values()) < 0.35


def test_held_out_splits_ask_held_out_values_in_reserved_phrasings(documents):
    seen_train = {q["type"] for d in documents["train"] for q in d["questions"]}
    for name in ("validation", "test", "validation_unseen", "test_unseen", "test_needles"):
        for doc in documents[name]:
            for q in doc["questions"]:
                answer = q["answers"][0]
                if q["kind"] != "digits":  # every answer holds a held-out word: never seen in training
                    assert any(held_out_word(w) for w in content(answer)), (doc["id"], answer)
                # the entities' names are held-out names too: every content word of a question is held out
                assert all(held_out_word(w) for w in content(q["question"])), (doc["id"], q["question"])
                templates = NEEDLE_QUESTIONS if q["type"] == "needle_word" else RELATION[q["type"]].questions
                assert template_regex(templates[-1]).fullmatch(q["question"]), q["question"]
                if name.endswith("_unseen"):
                    assert q["type"] in HELD_OUT_RELATIONS
    unseen_types = {q["type"] for d in documents["test_unseen"] for q in d["questions"]}
    assert unseen_types == set(HELD_OUT_RELATIONS) and not unseen_types & seen_train
    test_types = {q["type"] for d in documents["test"] for q in d["questions"]}
    assert test_types & HELD_OUT_RELATIONS and test_types - HELD_OUT_RELATIONS
    assert {q["kind"] for d in documents["test_unseen"] for q in d["questions"]} == set(KINDS)


def test_needles_hide_one_word_among_filler(documents):
    for doc in documents["train_needles"] + documents["test_needles"]:
        sentences = re.split(r"(?<=[.])\s+", doc["context"])
        assert 5 <= len(sentences) <= 7 and sum(s in FILLER for s in sentences) == len(sentences) - 1
        assert not any(c.isdigit() for c in doc["context"])
    phrasings = Counter(d["questions"][0]["question"] for d in documents["train_needles"])
    assert len(phrasings) >= 3 and len({d["questions"][0]["answers"][0] for d in documents["train_needles"]}) > 150


def test_bare_needles_are_the_same_needles_without_filler():
    for split in ("train", "test"):
        for i in range(40):
            full, bare = word_needle_document(split, i), word_needle_document(split, i, filler=(0, 0))
            assert bare["id"] == full["id"] + "-bare"
            assert bare["questions"][0]["answers"] == full["questions"][0]["answers"]  # the same word to copy
            assert split == "train" or bare["context"] in full["context"]  # held out: one reserved phrasing
            assert bare["context"].count(".") == 1 and bare["context"] not in FILLER
            some = word_needle_document(split, i, filler=(0, 2))
            assert 1 <= len(re.split(r"(?<=[.])\s+", some["context"])) <= 3
    assert word_needle_document("test", 3) == word_needle_document("test", 3, filler=(4, 6))  # the default is unchanged
    for bad in ((2, 1), (-1, 2), (0, len(FILLER) + 1), [0, 0]):
        with pytest.raises(ValueError, match="filler must be"):
            word_needle_document("train", 0, filler=bad)


def test_name_and_place_needles_give_a_held_out_value_to_copy():
    train_words = {w for lists in word_lists().values() for v in lists["train"] for w in words(v)}
    for subject, statements, questions in (("name", NAME_NEEDLE_STATEMENTS, NAME_NEEDLE_QUESTIONS),
                                           ("place", PLACE_NEEDLE_STATEMENTS, PLACE_NEEDLE_QUESTIONS)):
        seen = {}
        for split in ("train", "test"):
            values = []
            for i in range(60):
                doc = word_needle_document(split, i, subject=subject)
                assert doc == word_needle_document(split, i, subject=subject)  # deterministic
                assert doc["id"] == f"{split}-{subject}-needle-{i}"
                (q,) = doc["questions"]
                value = q["answers"][0]
                assert q["type"] == f"needle_{subject}" and q["kind"] == subject
                sentences = re.split(r"(?<=[.])\s+(?=[A-Z])", doc["context"])
                assert 5 <= len(sentences) <= 7 and sum(s in FILLER for s in sentences) == len(sentences) - 1
                assert len(re.findall(rf"(?<![\w-]){re.escape(value)}(?![\w-])", doc["context"])) == 1
                assert value not in q["question"]
                reserved = split != "train"  # held-out splits use only the reserved phrasings, training never
                statement = next(s for s in sentences if s not in FILLER)
                assert any(template_regex(t).fullmatch(statement) for t in statements[-1:]) == reserved
                assert any(template_regex(t).fullmatch(q["question"]) for t in questions[-1:]) == reserved
                bare = word_needle_document(split, i, filler=(0, 0), subject=subject)
                assert bare["questions"][0]["answers"] == [value]  # the same value to copy, alone
                assert bare["context"] == statement or split == "train"  # held out: one reserved phrasing
                values.append(value)
            seen[split] = set(values)
            if split == "test":  # every held-out value has a word no training value has
                assert all(content(v) - train_words for v in values)
        assert len(seen["train"]) >= 58 and not seen["train"] & seen["test"]
    assert word_needle_document("test", 0)["id"] == "test-word-needle-0"  # the word needles keep their ids
    with pytest.raises(ValueError, match="subject must be one of"):
        word_needle_document("train", 0, subject="colour")


def test_multi_needle_documents_ask_every_needle_and_each_question_finds_one():
    templates = {"word": (NEEDLE_STATEMENTS, NEEDLE_QUESTIONS), "name": (NAME_NEEDLE_STATEMENTS, NAME_NEEDLE_QUESTIONS),
                 "place": (PLACE_NEEDLE_STATEMENTS, PLACE_NEEDLE_QUESTIONS)}
    for split in ("train", "test"):
        counts = Counter()
        for i in range(60):
            doc = multi_needle_document(split, i)
            assert doc == multi_needle_document(split, i)  # deterministic
            sentences = re.split(r"(?<=[.])\s+(?=[A-Z])", doc["context"])
            statements = [s for s in sentences if s not in FILLER]
            assert 2 <= len(doc["questions"]) == len(statements) <= 4 and 4 <= len(sentences) - len(statements) <= 6
            kinds = Counter(q["kind"] for q in doc["questions"])
            assert kinds["word"] <= 1 and kinds["place"] <= (3 if split == "train" else 1)
            assert len(set(q["question"] for q in doc["questions"])) == len(doc["questions"])  # each asks its own
            reserved = split != "train"
            for q in doc["questions"]:
                (value,) = q["answers"]
                assert len(re.findall(rf"(?<![\w-]){re.escape(value)}(?![\w-])", doc["context"])) == 1
                statement = next(s for s in statements if value in s)
                questions = templates[q["kind"]][1]
                assert any(template_regex(t).fullmatch(q["question"]) for t in questions[-1:]) == reserved
                statement_templates = templates[q["kind"]][0]
                assert any(template_regex(t).fullmatch(statement) for t in statement_templates[-1:]) == reserved
            counts.update(kinds)
        assert set(counts) == {"word", "name", "place"}
    names = multi_needle_document("train", 0, needles=(3, 3), filler=(0, 0), subjects=("name",))
    assert [q["kind"] for q in names["questions"]] == ["name"] * 3 and names["context"].count(".") == 3
    for bad in ({"needles": (2, 2), "subjects": ("word",)}, {"needles": (0, 2)}, {"filler": (0, 99)},
                {"subjects": ("colour",)}, {"needles": (3, 3), "subjects": ("word", "place")}):
        with pytest.raises(ValueError):
            multi_needle_document("test", 0, **bad)


def test_word_documents_with_one_entity_ask_relations_without_binding():
    default = word_document("test", 5)
    assert word_document("test", 5, entity_count=None) == default  # the default documents are unchanged
    for split in ("train", "test"):
        for i in range(60):
            doc = word_document(split, i, entity_count=(1, 1))
            assert doc["id"].endswith("-e1to1") and 2 <= len(doc["questions"]) <= 4
            subjects = {q["question"] for q in doc["questions"]}
            assert len(subjects) == len(doc["questions"])
            for q in doc["questions"]:
                assert q["answers"][0] in doc["context"] and q["answers"][0] not in q["question"]
    for bad in ((0, 1), (3, 2), (1, 7), [1, 1]):
        with pytest.raises(ValueError, match="entity_count must be"):
            word_document("train", 0, entity_count=bad)


def test_build_writes_identical_files_twice_and_rejects_bad_arguments(tmp_path):
    sizes = dict(train_documents=40, heldout_documents=6)
    paths = build_synthetic_words_dataset(tmp_path / "a", **sizes)
    again = build_synthetic_words_dataset(tmp_path / "b", **sizes)
    assert set(paths) == {"train", "validation.eval", "test.eval", "validation.needle.eval", "test.needle.eval",
                          "validation.needle_bare.eval", "test.needle_bare.eval", "validation.name_needle.eval",
                          "test.name_needle.eval", "validation.place_needle.eval", "test.place_needle.eval",
                          "validation.multi_needle.eval", "test.multi_needle.eval", "validation_unseen.eval",
                          "test_unseen.eval"}
    for key, path in paths.items():
        assert path.read_bytes() == again[key].read_bytes(), key
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    rows = list(read_jsonl(paths["train"]))
    assert list(rows[0]) == ["id", "context", "prompt", "completion", "type", "kind", "task"]
    assert {r["task"] for r in rows} == {"synthetic_words"} and all(r["completion"] in r["context"] for r in rows)
    ids = {r["id"] for r in rows}
    assert len(ids) <= 40 and any("needle" in i for i in ids)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["dataset"] == "synthetic_words" and manifest["held_out_relations"] == sorted(HELD_OUT_RELATIONS)
    assert manifest["counts"]["train"]["questions"] == len(rows) and manifest["counts"]["test_unseen"]["documents"] == 6
    assert sum(manifest["counts"]["test"]["kinds"].values()) == manifest["counts"]["test"]["questions"]
    assert manifest["list_sizes"]["first"]["held_out"] == len(word_lists()["first"]["held_out"])
    from peft_generative.evaluation.knowledge import load_documents

    assert len(load_documents(paths["test_unseen.eval"])) == 6  # the knowledge evaluation reads the files
    assert {q["kind"] for d in load_documents(paths["test.name_needle.eval"]) for q in d["questions"]} == {"name"}
    assert "needle_subjects" not in manifest  # the default dataset's manifest is unchanged
    mixed = build_synthetic_words_dataset(tmp_path / "c", **sizes, needle_fraction=0.9,
                                          needle_subjects=("name", "place"))
    assert {r["kind"] for r in read_jsonl(mixed["train"]) if "needle" in r["id"]} == {"name", "place"}
    assert mixed["test.eval"].read_bytes() == paths["test.eval"].read_bytes()  # only the training needles change
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["needle_subjects"] == ["name", "place"]
    assert {len(d["questions"]) for d in load_documents(paths["test.multi_needle.eval"])} <= {2, 3, 4}
    multi = build_synthetic_words_dataset(tmp_path / "m", **sizes, needle_fraction=0.9, needles_per_doc=(2, 3),
                                          needle_subjects=("name", "place"))
    needles = [r for r in read_jsonl(multi["train"]) if "needle" in r["id"]]
    assert {r["kind"] for r in needles} == {"name", "place"} and len(needles) > len({r["id"] for r in needles})
    assert multi["test.multi_needle.eval"].read_bytes() == paths["test.multi_needle.eval"].read_bytes()
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["needles_per_doc"] == [2, 3]
    turned = build_synthetic_words_dataset(tmp_path / "v", **sizes, value_first=1.0)
    assert turned["test.eval"].read_bytes() == paths["test.eval"].read_bytes()  # held-out files never change
    assert all(r["id"].endswith("-vf1") for r in read_jsonl(turned["train"]) if "needle" not in r["id"])
    assert json.loads((tmp_path / "v" / "manifest.json").read_text())["value_first"] == 1.0
    with pytest.raises(ValueError, match="value_first must be a share"):
        build_synthetic_words_dataset(tmp_path / "d", value_first=2)
    with pytest.raises(ValueError, match="needles must be"):  # two word needles could not be told apart
        build_synthetic_words_dataset(tmp_path / "d", needles_per_doc=(2, 2))
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="needle_subjects must be"):
        build_synthetic_words_dataset(tmp_path / "d", needle_subjects=("word", "colour"))
    with pytest.raises(ValueError, match="positive"):
        build_synthetic_words_dataset(tmp_path / "d", train_documents=0)
    with pytest.raises(ValueError, match="positive"):
        build_synthetic_words_dataset(tmp_path / "d", heldout_documents=-1)
    with pytest.raises(ValueError, match=r"needle_fraction must be in \[0, 1\)"):
        build_synthetic_words_dataset(tmp_path / "d", needle_fraction=1.0)
    with pytest.raises(ValueError, match="split must be one of"):
        word_document("dev", 0)
    with pytest.raises(ValueError, match="split must be one of"):
        word_needle_document("eval", 0)
    with pytest.raises(ValueError, match="only for validation or test"):
        word_document("train", 0, unseen=True)


def test_command_line_builds_the_dataset_and_rejects_bad_flags(tmp_path, capsys):
    from peft_generative.data.__main__ import main

    out = tmp_path / "out"
    code = main(["--synthetic_words", "--out", str(out), "--words-train", "20", "--words-heldout", "4",
                 "--words-needle-fraction", "0.25", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["synthetic_words"]["counts"]["test"]["documents"] == 4
    manifest = json.loads((out / "synthetic_words" / "manifest.json").read_text())
    assert manifest["counts"]["train"]["documents"] == 20 and manifest["needle_fraction"] == 0.25
    assert (out / "synthetic_words" / "test_unseen.eval.jsonl").is_file()
    code = main(["--synthetic_words", "--out", str(out / "f"), "--words-train", "30", "--words-heldout", "2",
                 "--words-needle-fraction", "0.5", "--words-needle-filler", "0-0", "--no-progress"])
    assert code == 0 and json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "f" / "synthetic_words" / "manifest.json").read_text())
    assert manifest["needle_filler"] == [0, 0]
    needles = [r for r in read_jsonl(out / "f" / "synthetic_words" / "train.jsonl") if "needle" in r["id"]]
    assert needles and all(r["context"].count(".") == 1 for r in needles)
    code = main(["--synthetic_words", "--out", str(out / "s"), "--words-train", "30", "--words-heldout", "2",
                 "--words-needle-fraction", "0.5", "--words-needle-subjects", "word,name", "--no-progress"])
    assert code == 0 and json.loads(capsys.readouterr().out)
    needles = [r for r in read_jsonl(out / "s" / "synthetic_words" / "train.jsonl") if "needle" in r["id"]]
    assert {r["kind"] for r in needles} == {"word", "name"}
    code = main(["--synthetic_words", "--out", str(out / "m"), "--words-train", "30", "--words-heldout", "2",
                 "--words-needle-fraction", "0.5", "--words-needles-per-doc", "2-4", "--words-needle-subjects",
                 "word,name,place", "--no-progress"])
    assert code == 0 and json.loads(capsys.readouterr().out)
    assert json.loads((out / "m" / "synthetic_words" / "manifest.json").read_text())["needles_per_doc"] == [2, 4]
    bad = [(["--words-needles-per-doc", "2-3"], "--words-needles-per-doc: needles must be"),
           (["--words-needles-per-doc", "2"], "expected MIN-MAX"),
           (["--words-needle-subjects", "word,town"], "--words-needle-subjects must be a comma-separated list"),
           (["--words-needle-subjects", ","], "--words-needle-subjects must be a comma-separated list"),
           (["--words-train", "0"], "--words-train must be a positive number"),
           (["--words-needle-filler", "3-1"], "--words-needle-filler must be MIN-MAX"),
           (["--words-needle-filler", "0-x"], "expected MIN-MAX"),
           (["--words-heldout", "-2"], "--words-heldout must be a positive number"),
           (["--words-needle-fraction", "1.5"], r"--words-needle-fraction must be in \[0, 1\)"),
           (["--words-value-first", "-0.1"], r"--words-value-first must be in \[0, 1\]"),
           (["--words-train", "abc"], "invalid int value")]
    for extra, message in bad:
        with pytest.raises(SystemExit) as e:
            main(["--synthetic_words", "--out", str(tmp_path / "x"), *extra])
        assert e.value.code == 2 and re.search(message, capsys.readouterr().err), extra
    with pytest.raises(SystemExit) as e:  # a words option without the dataset is a mistake, not ignored
        main(["--synthetic_facts", "--out", str(tmp_path / "x"), "--words-train", "5"])
    assert e.value.code == 2 and "only apply to --synthetic_words" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_value_first_statements_turn_only_training_phrasings_of_the_form_what_is_value():
    from peft_generative.data.synthetic_words import RELATION, value_first_phrasing

    assert value_first_phrasing("{e}'s spouse is {v}.") == "{v} is {e}'s spouse."
    assert value_first_phrasing("The captain of {e} is {v}.") == "{v} is the captain of {e}."
    assert value_first_phrasing("The year {e} was born was {v}.") == "{v} was the year {e} was born."
    for template in ("{e} is married to {v}.", "{e}'s dream job is to be {a} {v}.", "By trade, {e} is {a} {v}."):
        assert value_first_phrasing(template) is None
    assert any(value_first_phrasing(t) for t in RELATION["spouse"].statements[:-1])
    documents = [word_document("train", i, value_first=1.0) for i in range(40)]
    plain = [word_document("train", i) for i in range(40)]
    assert word_document("train", 7, value_first=0.0) == plain[7]  # 0 draws nothing: the documents of before
    first = sum(d["context"].count(f"{q['answers'][0]} is ") + d["context"].count(f"{q['answers'][0]} was ")
                for d in documents for q in d["questions"])
    assert first > 10
    for d in documents:  # every answer still once in its context, never in its question
        for q in d["questions"]:
            assert d["context"].count(q["answers"][0]) == 1 and q["answers"][0] not in q["question"]
    with pytest.raises(ValueError, match="for training documents"):
        word_document("test", 0, value_first=0.5)
    with pytest.raises(ValueError, match="share in"):
        word_document("train", 0, value_first=1.5)
