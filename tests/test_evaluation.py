"""Evaluation harness: metrics, the three methods on each task format, outputs, buckets, bad inputs, CLI.

A tiny random Llama with the real SmolLM2 tokenizer (vocab_size = len(tokenizer)) keeps this fast.
"""

import json
import math
import re
import sys

import pytest
import torch
from peft import get_peft_model

import peft_generative as pg
from peft_generative.lm_costs import kv_cache_numel
from peft_generative.evaluation import (
    EvalDataError,
    accuracy,
    best_contains,
    best_exact_match,
    best_f1,
    bucket_label,
    bucket_labels,
    contains_answer,
    evaluate,
    exact_match,
    normalize_answer,
    perplexity,
    summarize,
    to_markdown,
    token_f1,
)
from peft_generative.evaluation.conversation import load_conversations
from peft_generative.evaluation.method_costs import contextualize_flops, generation_flops
from peft_generative.evaluation.demonstrations import load_episodes
from peft_generative.evaluation.engine import Engine
from peft_generative.evaluation.knowledge import group_documents, load_documents

from .conftest import load_example_script, randomize_generator, small_base

METHODS = ("closed_book", "prompting", "adapter")
SUMMARY_FIELDS = {
    "score", "answers", "contexts", "examples_per_s", "seconds_per_answer", "context_seconds_per_answer",
    "flops_per_answer", "context_flops_per_answer", "total_flops_per_answer", "state_bytes_per_context",
    "truncated_answers",
}


# ---- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tokenizer):
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=32)
    peft_model = randomize_generator(get_peft_model(small_base(tokenizer), config))
    peft_model.eval()
    peft_model.set_tokenizer(tokenizer)
    return peft_model


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def knowledge_file(tmp_path, n=4):
    towns = ["Velmora", "Quillmoor", "Ashford", "Brindle", "Corvale", "Dunmere"]
    return write_jsonl(tmp_path / "knowledge.jsonl", [
        {"id": f"doc{i}", "context": f"The lantern of {towns[i]} is {'green red blue gold amber grey'.split()[i]}. "
                                     f"It was lit by the salt traders of {towns[i]} in the spring.",
         "questions": [{"question": f"What colour is the lantern of {towns[i]}?",
                        "answers": ["green red blue gold amber grey".split()[i]]},
                       {"question": f"Who lit the lantern of {towns[i]}?", "answers": ["the salt traders", "traders"]}]}
        for i in range(n)
    ])


# ---- metrics ----------------------------------------------------------------------------------------------------
def test_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a pear & THE plum.") == "apple pear plum"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # pred tokens [cat, sat, on, mat], gold [cat, on, mat]: P = 3/4, R = 1, F1 = 6/7
    assert token_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    assert token_f1("Paris", "London") == 0.0
    assert token_f1("", "London") == 0.0
    assert token_f1("", "") == 1.0
    assert best_f1("the salt traders", ["merchants", "salt traders"]) == 1.0
    assert best_exact_match("traders", ["merchants", "Traders."]) == 1.0
    assert best_f1("salt", ["salt traders", "x"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="gold"):
        best_f1("x", [])
    assert accuracy([1, 0, 1, 1]) == 0.75
    assert math.isnan(accuracy([]))
    assert perplexity(4 * math.log(2), 4) == pytest.approx(2.0)


def test_gold_contained_looks_for_the_answer_as_whole_words():
    # token boundaries: a number inside a longer number is not contained
    assert contains_answer("2012", "12") == 0.0
    assert contains_answer("in 2012", "2012") == 1.0
    assert contains_answer("The Theatre Royal", "theatre") == 1.0  # articles go only as whole words
    assert contains_answer("The ferry leaves from Port Aldane every day.", "port aldane") == 1.0
    assert contains_answer("The ferry leaves from Port every day, Aldane said", "port aldane") == 0.0  # in order
    assert contains_answer("Aldane Port", "Port Aldane") == 0.0
    assert contains_answer("Portaldane", "port aldane") == 0.0
    # punctuation and articles are normalised away on both sides (SQuAD normalisation)
    assert contains_answer("About 1,200 people.", "1200") == 1.0
    assert contains_answer("It was the Green Lantern!", "a green lantern") == 1.0
    assert contains_answer("St. Ives", "st ives") == 1.0
    assert contains_answer("The answer is green", "green") == exact_match("green", "green") == 1.0
    assert contains_answer("", "green") == 0.0
    assert contains_answer("green", "the green lantern") == 0.0  # the whole gold answer must be there
    # an exact match is always contained
    for prediction, gold in (("The Eiffel Tower.", "eiffel tower"), ("1874", "1874")):
        assert exact_match(prediction, gold) == contains_answer(prediction, gold) == 1.0
    for empty in ("", "  ", "The", "a, an!"):
        with pytest.raises(ValueError, match="empty after SQuAD normalisation"):
            contains_answer("the answer", empty)
    # several gold answers: the best one; answers with no word left are passed over
    assert best_contains("It opened in 1874.", ["1875", "1874"]) == 1.0
    assert best_contains("It opened in 1874.", ["1875", "74"]) == 0.0
    assert best_contains("Port Aldane", ["The", "aldane"]) == 1.0
    assert best_contains("Port Aldane", "port") == 1.0  # a single string is one gold answer
    for golds in ([], ["", "the"]):
        with pytest.raises(ValueError, match="gold"):
            best_contains("x", golds)


def test_buckets_by_token_length():
    assert bucket_labels((1024, 512)) == ["<=512", "513-1024", ">1024"]
    assert bucket_label(1, (512, 1024)) == "<=512"
    assert bucket_label(512, (512, 1024)) == "<=512"
    assert bucket_label(513, (512, 1024)) == "513-1024"
    assert bucket_label(1024, (512, 1024)) == "513-1024"
    assert bucket_label(9000, (512, 1024)) == ">1024"
    with pytest.raises(ValueError):
        bucket_labels([0])


def test_cost_estimates_grow_with_tokens(model):
    config = model.get_base_model().config
    assert generation_flops(config, 100, 5) > generation_flops(config, 10, 5) > 0
    assert generation_flops(config, 10, 5, extra_per_token=1e6) == pytest.approx(
        generation_flops(config, 10, 5) + 1e6 * (10 + 4))
    assert contextualize_flops(model, 200) > contextualize_flops(model, 20) > 0


# ---- knowledge --------------------------------------------------------------------------------------------------
def test_knowledge_three_methods_outputs_and_buckets(tmp_path, model, tokenizer):
    path = knowledge_file(tmp_path)
    out = tmp_path / "out"
    result = evaluate("knowledge", path, model=model, tokenizer=tokenizer, out_dir=out, buckets=(30, 60),
                      group_sizes=(1, 2, 8), max_new_tokens=4, batch_size=3, progress=False)
    # group sizes 1 and 2 run (4 and 2 contexts); 8 is larger than the file and is skipped
    assert result["data"]["group_sizes_skipped"] == [8]
    assert {r["group"] for r in result["records"]} == {"docs=1", "docs=2"}
    assert set(result["methods"]) == set(METHODS)
    for method, summary in result["methods"].items():
        assert SUMMARY_FIELDS <= set(summary) and "exact_match" in summary
        records = [r for r in result["records"] if r["method"] == method]
        assert summary["contained"] == pytest.approx(100 * sum(r["contained"] for r in records) / len(records))
        assert "contained_answers" not in summary  # every answer was checked
        assert summary["answers"] == 16 and summary["contexts"] == 6
        assert 0 <= summary["score"] <= 100 and summary["flops_per_answer"] > 0
    closed, prompting, adapter = (result["methods"][m] for m in METHODS)
    assert closed["state_bytes_per_context"] == 0 and closed["context_flops_per_answer"] == 0
    assert prompting["flops_per_answer"] > closed["flops_per_answer"]
    assert prompting["prompt_tokens_per_answer"] > closed["prompt_tokens_per_answer"]
    assert adapter["context_flops_per_answer"] > 0 and adapter["context_seconds_per_answer"] > 0
    assert adapter["flops_per_answer"] > closed["flops_per_answer"]  # the adapter's own per-token cost

    docs = load_documents(path)
    grouped = group_documents(docs, 2)
    assert grouped[0]["context"] == docs[0]["context"] + "\n\n" + docs[1]["context"]
    assert grouped[0]["questions"] == docs[0]["questions"] + docs[1]["questions"]
    contexts = {g["id"]: g["context"] for n in (1, 2) for g in group_documents(docs, n)}
    adapter_numel = model.contextualize("x", activate=False, progress=False).adapter_numel
    for r in result["records"]:
        tokens = len(tokenizer(contexts[r["unit"]], add_special_tokens=False)["input_ids"])
        assert r["context_tokens"] == tokens
        assert r["bucket"] == bucket_label(tokens, (30, 60))
        expected_state = {"closed_book": 0, "prompting": kv_cache_numel(model.config, tokens) * 4,
                          "adapter": adapter_numel * 4}[r["method"]]
        assert r["state_bytes"] == expected_state
        assert "\n" not in r["prediction"]
    assert set(result["by_bucket"]) == {r["bucket"] for r in result["records"]}
    assert result["by_kind"] == {} and result["control_contained"] is None  # no kinds in this file, no control
    assert all("kind" not in r and "type" not in r for r in result["records"])

    saved = json.loads((out / "results.json").read_text())
    assert {"task", "metric", "higher_is_better", "methods", "by_bucket", "by_group", "settings", "files"} <= set(saved)
    assert saved["task"] == "knowledge" and saved["metric"] == "f1" and saved["higher_is_better"] is True
    assert set(saved["methods"]) == set(METHODS)
    assert SUMMARY_FIELDS <= set(saved["methods"]["adapter"])
    markdown = (out / "results.md").read_text()
    assert "| method | score | EM | gold contained |" in markdown and "generative adapter" in markdown
    assert "answer kind" not in markdown
    assert "| context length (tokens) |" in markdown and "| docs=2 |" in markdown
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 16 and {"method", "prediction", "f1", "em", "contained", "bucket"} <= set(
        json.loads(lines[0]))
    for name in ("score_by_length.png", "score_vs_cost.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batched_answers_match_one_at_a_time(tmp_path, model, tokenizer):
    path = knowledge_file(tmp_path)
    runs = [evaluate("knowledge", path, model=model, tokenizer=tokenizer, group_sizes=(1,), methods=("adapter",),
                     max_new_tokens=5, batch_size=b, progress=False) for b in (1, 8)]
    single, batched = ([r["prediction"] for r in run["records"]] for run in runs)
    assert single == batched
    # and equal to generating by hand with the adapter active
    engine = Engine(model, tokenizer, max_new_tokens=5)
    doc = load_documents(path)[2]
    ctx = model.contextualize(doc["context"], activate=False, progress=False)
    ids = engine.chat_ids(doc["questions"][0]["question"])
    with model.use_context(ctx):
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=5, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    by_hand = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip().split("\n")[0].strip()
    assert single[4] == by_hand


def test_gold_answer_likelihood_is_scored_with_the_same_prompt_and_adapter(tmp_path, model, tokenizer):
    path = knowledge_file(tmp_path, n=2)
    out = tmp_path / "out"
    result = evaluate("knowledge", path, model=model, tokenizer=tokenizer, out_dir=out, group_sizes=(1,),
                      max_new_tokens=3, batch_size=3, progress=False)
    doc = load_documents(path)[1]
    question, gold = doc["questions"][0]["question"], doc["questions"][0]["answers"][0]
    engine = Engine(model, tokenizer, max_new_tokens=3)
    answer = engine.continuation_ids(gold)
    assert answer[-1] == tokenizer.eos_token_id  # the answer and its end of turn
    ctx = model.contextualize(doc["context"], activate=False, progress=False)
    by_method = {}
    for method, prompt_context, adapter in (("closed_book", None, None), ("prompting", doc["context"], None),
                                             ("adapter", None, ctx)):
        ids = engine.prompt(question, prompt_context, reserve=3)[0]
        with model.use_context(adapter):
            logits = model(input_ids=torch.tensor([ids + answer])).logits[0, len(ids) - 1:-1].float()
        by_hand = -torch.log_softmax(logits, -1).gather(-1, torch.tensor(answer)[:, None]).sum().item()
        record = next(r for r in result["records"] if r["method"] == method and r["unit"] == "docs1-1"
                      and r["question"] == question)
        assert record["answer_tokens"] == len(answer)
        assert record["answer_nll"] == pytest.approx(by_hand, rel=1e-4)
        by_method[method] = record["answer_nll"]
        assert "untimed_seconds" not in record
    assert len(set(by_method.values())) == 3  # the prompt's context and the adapter both change it
    for method, summary in result["methods"].items():
        records = [r for r in result["records"] if r["method"] == method]
        expected = math.exp(sum(r["answer_nll"] for r in records) / sum(r["answer_tokens"] for r in records))
        assert summary["answer_perplexity"] == pytest.approx(expected)
    assert "| method | score | EM | gold contained | gold-answer PPL |" in (out / "results.md").read_text()


# ---- gold contained and answer kinds ----------------------------------------------------------------------------
def test_question_kind_and_type_survive_loading_and_grouping(tmp_path):
    path = write_jsonl(tmp_path / "kinds.jsonl", [
        {"id": "a", "context": "Built in 1874 at Port Aldane.", "questions": [
            {"question": "When?", "answers": ["1874"], "kind": "digits", "type": "year"},
            {"question": "Where?", "answers": ["Port Aldane"], "kind": " place "}]},
        {"id": "b", "context": "Old text.", "questions": [{"question": "Who?", "answers": ["Mira"], "type": "person"}]},
    ])
    docs = load_documents(path)
    assert docs[0]["questions"] == [
        {"question": "When?", "answers": ["1874"], "kind": "digits", "type": "year"},
        {"question": "Where?", "answers": ["Port Aldane"], "kind": "place"}]  # kept stripped
    assert docs[1]["questions"] == [{"question": "Who?", "answers": ["Mira"], "type": "person"}]
    assert group_documents(docs, 2)[0]["questions"] == docs[0]["questions"] + docs[1]["questions"]
    # a file without kinds (the older format) loads as before
    assert "kind" not in load_documents(knowledge_file(tmp_path))[0]["questions"][0]


def test_an_answer_with_no_word_left_is_not_looked_for(tmp_path, model, tokenizer):
    """ "A" normalises to nothing (an article): F1 / EM are scored as before, gold contained leaves it out."""
    path = write_jsonl(tmp_path / "letters.jsonl", [{"context": "Option A is right.", "questions": [
        {"question": "Which option?", "answers": ["A"]}, {"question": "Is it right?", "answers": ["yes", "The"]}]}])
    result = evaluate("knowledge", path, model=model, tokenizer=tokenizer, group_sizes=(1,), max_new_tokens=3,
                      methods=["closed_book"], progress=False)
    first, second = result["records"]
    assert first["contained"] is None and second["contained"] == contains_answer(second["prediction"], "yes")
    summary = result["methods"]["closed_book"]
    assert summary["contained"] == 100 * second["contained"] and summary["contained_answers"] == 1
    assert "(of 1)" in to_markdown(result)


@pytest.mark.parametrize("question, message", [
    ({"kind": 3}, r"kinds.jsonl:1 \(question 0\): 'kind' must be a string, got int"),
    ({"kind": "  "}, r"kinds.jsonl:1 \(question 0\): 'kind' is empty"),
    ({"kind": None}, r"'kind' must be a string, got NoneType"),
    ({"type": ["year"]}, r"'type' must be a string, got list"),
])
def test_bad_kind_type_or_unscorable_answer(tmp_path, question, message):
    path = write_jsonl(tmp_path / "kinds.jsonl", [
        {"context": "A.", "questions": [{"question": "q?", "answers": ["a word"]} | question]}])
    with pytest.raises(EvalDataError, match=message):
        load_documents(path)


def crafted_records():
    """Answers of three methods to four questions (two contexts), scored with the real metric functions."""
    golds = [("digits", ["12"]), ("digits", ["1874"]), ("place", ["Port Aldane", "Aldane"]), (None, ["green"])]
    predictions = {
        "closed_book": ["In 2012.", "It was 1874", "The ferry leaves from Port Aldane every day.", "Green."],
        "adapter": ["12", "1875", "port", "the green one"],
        "adapter_other_context": ["1812", "1875", "Aldane", "blue"],
    }
    records = []
    for method, answers in predictions.items():
        for i, (answer, (kind, gold)) in enumerate(zip(answers, golds)):
            records.append({
                "method": method, "unit": f"u{i // 2}", "group": "docs=1", "bucket": "<=512", "context_tokens": 9,
                "prediction": answer, "gold": gold, "f1": best_f1(answer, gold), "em": best_exact_match(answer, gold),
                "contained": best_contains(answer, gold), **({"kind": kind} if kind else {}),
                "seconds": 0.1, "context_seconds": 0.0, "flops": 1e9, "context_flops": 0.0, "prompt_tokens": 20,
                "generated_tokens": 3, "truncated": False, "state_bytes": 0,
            })
    return records


def test_gold_contained_and_kind_breakdown_against_hand_computed_values():
    records = crafted_records()
    methods = ["closed_book", "adapter", "adapter_other_context"]
    summary = summarize(records, metric="f1", methods=methods, buckets=(512,))
    # closed-book: contained 0,1,1,1; EM 0,0,0,1; F1 0, 2/4 (it was 1874), 4/9 (2 of 7 words), 1
    closed, adapter = summary["methods"]["closed_book"], summary["methods"]["adapter"]
    assert closed["contained"] == pytest.approx(75.0) and closed["exact_match"] == pytest.approx(25.0)
    assert closed["score"] == pytest.approx(100 * (0 + 1 / 2 + 4 / 9 + 1) / 4)
    # adapter: contained 1,0,0,1; EM 1,0,0,0; F1 1, 0, 2/3 (port of port aldane), 2/3 (green of green one)
    assert adapter["contained"] == pytest.approx(50.0) and adapter["exact_match"] == pytest.approx(25.0)
    assert adapter["score"] == pytest.approx(100 * (1 + 0 + 2 / 3 + 2 / 3) / 4)
    assert summary["methods"]["adapter_other_context"]["contained"] == pytest.approx(25.0)  # "Aldane" only
    # the same per context-length bucket and per group
    assert summary["by_bucket"]["<=512"]["closed_book"]["contained"] == pytest.approx(75.0)
    assert summary["by_group"]["docs=1"]["adapter"]["contained"] == pytest.approx(50.0)
    by_kind = summary["by_kind"]
    assert list(by_kind) == ["digits", "place", "(no kind)"]
    digits = by_kind["digits"]
    assert digits["closed_book"] == {"answers": 2, "score": pytest.approx(25.0), "exact_match": 0.0,
                                     "contained": 50.0}
    assert digits["adapter"] == {"answers": 2, "score": 50.0, "exact_match": 50.0, "contained": 50.0}
    assert by_kind["place"]["closed_book"]["score"] == pytest.approx(100 * 4 / 9)
    assert by_kind["place"]["adapter"]["contained"] == 0.0
    assert by_kind["place"]["adapter_other_context"]["contained"] == 100.0
    assert by_kind["(no kind)"]["adapter"] == {"answers": 1, "score": pytest.approx(200 / 3), "exact_match": 0.0,
                                               "contained": 100.0}
    # paired own vs other adapter: contained 1,0,0,1 against 0,0,1,0
    paired = summary["control_contained"]
    assert {k: paired[k] for k in ("answers", "own_only", "other_only", "both", "neither")} == {
        "answers": 4, "own_only": 2, "other_only": 1, "both": 0, "neither": 1}
    diffs = [1, 0, -1, 1]
    spread = math.sqrt(sum((d - 0.25) ** 2 for d in diffs) / 3)
    assert paired["difference"] == pytest.approx(25.0) and paired["standard_error"] == pytest.approx(100 * spread / 2)
    assert summary["control_gap"] is None  # these records carry no likelihood

    result = {"task": "knowledge", "data_file": "k.jsonl", "model": "m", "generator": "g", "wall_seconds": 1.0,
              "settings": {"contexts": 2}, "data": {}, **summary}
    text = to_markdown(result)
    assert "| method | score | EM | gold contained | gold-answer PPL | answers |" in text
    assert "| closed-book | 48.61 | 25.00 | 75.00 | - | 4 |" in text
    assert ("own only 2, other only 1, both 0, neither 1 of 4 answers; difference +25.00 ± 47.87 points"
            in text)
    assert "| answer kind | method | F1 | EM | gold contained | answers |" in text
    assert "| digits | closed-book | 25.00 | 0.00 | 50.00 | 2 |" in text
    assert "| place | adapter of another context (control) | 100.00 | 100.00 | 100.00 | 1 |" in text  # Aldane
    assert "| (no kind) | generative adapter | 66.67 | 0.00 | 100.00 | 1 |" in text

    # without kinds: no breakdown, and the per-method numbers do not change
    plain = summarize([{k: v for k, v in r.items() if k != "kind"} for r in records], metric="f1", methods=methods,
                      buckets=(512,))
    assert plain["by_kind"] == {} and plain["methods"] == summary["methods"]
    assert "answer kind" not in to_markdown(result | plain)


def test_gold_contained_for_every_method_and_kinds_end_to_end(tmp_path, model, tokenizer):
    """A real run (the tiny random model): the golds are made from the closed-book answers of a first run (which
    depend on the question only), so that closed-book's gold contained, EM and F1 are known by hand."""
    contexts = ["The lantern of Velmora is green and was lit in 1874.", "Brindle keeps a grey boat by the mill.",
                "Corvale has a ferry to Port Aldane."]
    questions = ["What colour is the lantern?", "In which year was it lit?", "Who keeps the boat?"]

    def data(golds, name):
        return write_jsonl(tmp_path / name, [
            {"id": f"d{i}", "context": c, "questions": [
                {"question": questions[0], "answers": [golds[0]], "kind": "word", "type": "colour"},
                {"question": questions[1], "answers": [golds[1]], "kind": "digits"},
                {"question": questions[2], "answers": [golds[2]]}]}
            for i, c in enumerate(contexts)])

    kwargs = dict(model=model, tokenizer=tokenizer, group_sizes=(1,), max_new_tokens=6, progress=False)
    first = evaluate("knowledge", data(["green", "1874", "Brindle"], "first.jsonl"), methods=["closed_book"],
                     **kwargs)
    answers = [r["prediction"] for r in first["records"][:3]]
    assert [r["prediction"] for r in first["records"][3:6]] == answers  # closed-book ignores the context
    words = [normalize_answer(a).split() for a in answers]
    assert words[0] and words[1], answers  # the random model says something for both
    # gold 1: the whole answer (EM, contained); gold 2: its last word (contained; F1 = 2 / (n + 1)); gold 3: absent
    path = data([answers[0], words[1][-1], "zzqx"], "kinds.jsonl")
    methods = ["closed_book", "prompting", "adapter", "adapter_other_context"]
    result = evaluate("knowledge", path, methods=methods, out_dir=tmp_path / "out", **kwargs)
    assert set(result["methods"]) == set(methods)
    for method in methods:
        records = [r for r in result["records"] if r["method"] == method]
        assert all(r["contained"] == best_contains(r["prediction"], r["gold"]) for r in records)
        assert result["methods"][method]["contained"] == pytest.approx(
            100 * sum(r["contained"] for r in records) / len(records))
        assert [r.get("kind") for r in records[:3]] == ["word", "digits", None]
        assert [r.get("type") for r in records[:3]] == ["colour", None, None]
    closed = result["methods"]["closed_book"]
    n = len(words[1])
    assert closed["contained"] == pytest.approx(100 * 2 / 3)
    assert closed["exact_match"] == pytest.approx(100 * (1 + (n == 1)) / 3)
    assert closed["score"] == pytest.approx(100 * (1 + 2 / (n + 1)) / 3)
    by_kind = result["by_kind"]
    assert list(by_kind) == ["digits", "word", "(no kind)"]
    assert set(by_kind["word"]) == set(methods) and by_kind["word"]["closed_book"]["answers"] == 3
    assert by_kind["word"]["closed_book"]["contained"] == by_kind["word"]["closed_book"]["exact_match"] == 100.0
    assert by_kind["digits"]["closed_book"]["contained"] == 100.0
    assert by_kind["(no kind)"]["closed_book"]["contained"] == 0.0
    paired = result["control_contained"]
    assert paired["answers"] == 9 and sum(paired[k] for k in ("own_only", "other_only", "both", "neither")) == 9
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["by_kind"]["word"]["closed_book"]["contained"] == 100.0 and saved["control_contained"] == paired
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| answer kind | method | F1 | EM | gold contained | answers |" in markdown
    assert "| word | closed-book | 100.00 | 100.00 | 100.00 | 3 |" in markdown
    assert "Gold contained, own context's adapter against another context's" in markdown

    # reusing the baselines of a run made before `contained` and `kind` were recorded: both are filled in
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    old = [{k: v for k, v in json.loads(line).items() if k not in ("contained", "kind", "type")} for line in lines]
    (tmp_path / "out" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    again = evaluate("knowledge", path, methods=["closed_book", "adapter"], reuse_baselines=tmp_path / "out",
                     **kwargs)
    assert again["settings"]["reused_baselines"]["methods"] == ["closed_book"]
    assert again["methods"]["closed_book"]["contained"] == pytest.approx(closed["contained"])
    assert again["by_kind"]["word"]["closed_book"] == by_kind["word"]["closed_book"]


def test_prompting_keeps_the_end_of_a_context_too_long_for_the_model(model, tokenizer):
    engine = Engine(model, tokenizer, max_new_tokens=8)  # the tiny model has 512 positions
    context = " ".join(f"fact{i}" for i in range(400)) + " The lantern is green."
    ids, truncated = engine.prompt("What colour is the lantern?", context, reserve=8)
    assert truncated and len(ids) + 8 <= 512
    text = tokenizer.decode(ids)
    assert "The lantern is green." in text and "fact0 " not in text
    short, flag = engine.prompt("What colour is the lantern?", "The lantern is green.", reserve=8)
    assert not flag and len(short) < len(ids)


# ---- demonstrations -------------------------------------------------------------------------------------------
def test_demonstrations_option_scoring_and_generation(tmp_path, model, tokenizer):
    demos = [{"input": "a wonderful film", "output": "positive"}, {"input": "dull and slow", "output": "negative"}]
    queries = [{"input": "great acting", "output": "positive"}, {"input": "boring plot", "output": "negative"},
               {"input": "fine", "output": "neutral"}]
    path = write_jsonl(tmp_path / "demos.jsonl", [
        {"task": "sentiment", "k": 1, "episode": 0, "demonstrations": demos[:1], "queries": queries,
         "options": ["negative", "neutral", "positive"]},
        {"task": "sentiment", "k": 2, "episode": 0, "demonstrations": demos, "queries": queries,
         "options": ["negative", "neutral", "positive"]},
        {"demonstrations": [{"input": "2 + 2", "output": "4"}], "queries": [{"input": "3 + 3", "output": "6"}]},
    ])
    result = evaluate("demonstrations", path, model=model, tokenizer=tokenizer, out_dir=tmp_path / "out",
                      max_new_tokens=3, progress=False)
    assert result["metric"] == "accuracy" and set(result["methods"]) == set(METHODS)
    assert {r["group"] for r in result["records"]} == {"k=1", "k=2"}
    ranked = {m: [r for r in result["records"] if r["method"] == m and "option_logprobs" in r] for m in METHODS}
    assert all(len(rs) == 6 and all(len(r["option_logprobs"]) == 3 for r in rs) for rs in ranked.values())
    for r in ranked["closed_book"]:
        best = max(range(3), key=r["option_logprobs"].__getitem__)
        assert r["prediction"] == ["negative", "neutral", "positive"][best]
        assert r["correct"] == float(r["prediction"] == r["gold"])
    # each method sees the context differently: the scores must differ from closed-book
    for m in ("prompting", "adapter"):
        assert any(a["option_logprobs"] != b["option_logprobs"] for a, b in zip(ranked[m], ranked["closed_book"]))
    generated = [r for r in result["records"] if "option_logprobs" not in r]
    assert len(generated) == 3 and all(r["generated_tokens"] >= 1 for r in generated)
    # gold contained only where the answer is generated (an option-scored prediction is one of the options)
    assert all(r["contained"] == contains_answer(r["prediction"], "6") for r in generated)
    assert not any("contained" in r for rs in ranked.values() for r in rs)
    for method, summary in result["methods"].items():
        assert summary["answers"] == 7 and 0 <= summary["score"] <= 100
        mine = next(r for r in generated if r["method"] == method)
        assert summary["contained"] == 100 * mine["contained"] and summary["contained_answers"] == 1
    assert "gold contained" in (tmp_path / "out" / "results.md").read_text() and result["by_kind"] == {}


# ---- conversation ---------------------------------------------------------------------------------------------
HISTORY = [[{"role": "user", "content": "Hi, my dog is called Rex."},
            {"role": "assistant", "content": "Nice to meet Rex! I have a cat named Mila."}]]


def test_conversation_next_session_perplexity(tmp_path, model, tokenizer):
    path = write_jsonl(tmp_path / "next.jsonl", [
        {"id": "a", "history": HISTORY,
         "next": [{"role": "user", "content": "Hello again"}, {"role": "assistant", "content": "How is Rex?"}]},
        {"id": "b", "history": HISTORY * 2,  # opens with the assistant: that message is not scored
         "next": [{"role": "assistant", "content": "Hey!"}, {"role": "user", "content": "Rex is fine."},
                  {"role": "assistant", "content": "Glad to hear it."}]},
        {"id": "c", "history": HISTORY,  # nothing to score: left out and counted
         "next": [{"role": "assistant", "content": "Hey!"}, {"role": "user", "content": "Bye."}]},
    ])
    result = evaluate("conversation", path, model=model, tokenizer=tokenizer, out_dir=tmp_path / "out",
                      progress=False)
    assert result["metric"] == "perplexity" and result["higher_is_better"] is False
    assert result["data"]["records_without_reply_to_score"] == 1 and result["data"]["skipped"][0].endswith(":3")
    scored = {m: result["methods"][m]["scored_tokens"] for m in METHODS}
    assert len(set(scored.values())) == 1 and scored["adapter"] > 0  # the same tokens scored three ways
    ppl = {m: result["methods"][m]["score"] for m in METHODS}
    assert all(math.isfinite(v) and v > 1 for v in ppl.values())
    assert ppl["adapter"] != ppl["closed_book"] and ppl["prompting"] != ppl["closed_book"]
    assert {r["group"] for r in result["records"]} == {"sessions=1", "sessions=2"}
    assert result["control_gap"] is None  # only with the control method
    assert not any("contained" in s for s in result["methods"].values())  # replies are scored, not generated
    assert "gold contained" not in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "score_by_length.png").exists()


def test_conversation_probes_f1(tmp_path, model, tokenizer):
    path = write_jsonl(tmp_path / "probes.jsonl", [
        {"history": HISTORY, "probes": [{"question": "What is my dog called?", "answers": ["Rex"], "kind": "name"},
                                        {"question": "What pet do you have?", "answers": ["a cat", "cat"]}]},
    ])
    result = evaluate("conversation", path, model=model, tokenizer=tokenizer, max_new_tokens=3, progress=False)
    assert result["metric"] == "f1" and result["data"]["kind"] == "probes"
    assert all(s["answers"] == 2 and {"exact_match", "contained"} <= set(s) for s in result["methods"].values())
    # probes are short answers: gold contained and the per-kind breakdown work as for knowledge
    assert list(result["by_kind"]) == ["name", "(no kind)"]
    assert all(result["by_kind"]["name"][m]["answers"] == 1 for m in METHODS)


# ---- bad input ----------------------------------------------------------------------------------------------------
def test_control_answers_with_the_next_contexts_adapter(tmp_path, model, tokenizer, monkeypatch, capsys):
    # contexts X, Y, X with the same questions: the control for doc0 uses Y's adapter (= the adapter answers of
    # doc1), the control for doc1 uses X's adapter (= the adapter answers of doc0)
    x, y = "The lantern of Velmora is green and old.", "Brindle keeps a grey boat by the salt mill."
    questions = [{"question": "What colour is the lantern?", "answers": ["green"]},
                 {"question": "What does Brindle keep?", "answers": ["a grey boat"]}]
    path = write_jsonl(tmp_path / "k.jsonl", [{"id": f"d{i}", "context": c, "questions": questions}
                                              for i, c in enumerate((x, y, x))])
    result = evaluate("knowledge", path, model=model, tokenizer=tokenizer, group_sizes=(1,), max_new_tokens=6,
                      methods=["adapter", "adapter_other_context"], out_dir=tmp_path / "k", progress=False)
    answers = {}
    for r in result["records"]:
        answers.setdefault((r["method"], r["unit"]), []).append(r["prediction"])
    units = sorted({r["unit"] for r in result["records"]})
    adapter = [answers[("adapter", u)] for u in units]
    control = [answers[("adapter_other_context", u)] for u in units]
    assert adapter[0] == adapter[2] != adapter[1]  # the random generator makes X and Y answer differently
    assert control[0] == adapter[1] and control[1] == adapter[0] and control[2] == adapter[0]
    assert result["methods"]["adapter_other_context"]["state_bytes_per_context"] > 0
    # paired gap: per question q, d0 gains g_q (Y's adapter instead of X's), d1 loses it, d2 (X vs X) ties
    nll = {(r["method"], r["unit"], r["question"]): r["answer_nll"] / r["answer_tokens"] for r in result["records"]}
    gaps = [nll[("adapter_other_context", u, q["question"])] - nll[("adapter", u, q["question"])]
            for u in units for q in questions]
    assert gaps[0] == pytest.approx(-gaps[2]) and gaps[0] != 0 and gaps[4] == gaps[5] == 0
    gap = result["control_gap"]
    assert (gap["answers"], gap["own_better"], gap["other_better"]) == (6, 2, 2)
    assert gap["mean_gap_nats_per_token"] == pytest.approx(sum(gaps) / 6, abs=1e-6)
    assert gap["mean_gap_nats_per_token"] == pytest.approx(0, abs=1e-5) and gap["standard_error"] > 0
    text = (tmp_path / "k" / "results.md").read_text()
    assert "lower NLL for 2 of 6 answers (2 the other way)" in text
    # examples/scripts/plot_control_gap.py recomputes the same gap from predictions.jsonl and plots it
    script = load_example_script("plot_control_gap")
    monkeypatch.setattr(sys, "argv", ["plot_control_gap.py", str(tmp_path / "k"), "--labels", "X Y X",
                                      "--out", str(tmp_path / "gap.png")])
    script.main()
    assert re.search(r"X Y X: [+-]0\.000 ± .* better for 2/6", capsys.readouterr().out)
    assert (tmp_path / "gap.png").stat().st_size > 0
    with pytest.raises(ValueError, match="at least two contexts"):
        evaluate("knowledge", write_jsonl(tmp_path / "one.jsonl", [{"context": x, "questions": questions}]),
                 model=model, tokenizer=tokenizer, group_sizes=(1,), methods=["adapter_other_context"],
                 progress=False)


def test_reuse_baselines_of_an_earlier_run(tmp_path, model, tokenizer):
    path = knowledge_file(tmp_path)
    kwargs = dict(model=model, tokenizer=tokenizer, group_sizes=(1,), max_new_tokens=6, progress=False)
    first = evaluate("knowledge", path, out_dir=tmp_path / "first", **kwargs)
    again = evaluate("knowledge", path, out_dir=tmp_path / "again", reuse_baselines=tmp_path / "first", **kwargs)
    assert again["settings"]["reused_baselines"] == {"from": str(tmp_path / "first"),
                                                     "methods": ["closed_book", "prompting"]}
    assert "reused from" in (tmp_path / "again" / "results.md").read_text()
    for method in ("closed_book", "prompting", "adapter"):
        old = [r for r in first["records"] if r["method"] == method]
        new = [r for r in again["records"] if r["method"] == method]
        assert [r["prediction"] for r in new] == [r["prediction"] for r in old]
        assert again["methods"][method]["score"] == pytest.approx(first["methods"][method]["score"])
        # baselines are read back (the same timings), the generator's method is run again (new timings)
        same_timing = [r["seconds"] for r in new] == [r["seconds"] for r in old]
        assert same_timing == (method != "adapter")
    with pytest.raises(ValueError, match="other contexts or questions"):
        evaluate("knowledge", path, out_dir=None, reuse_baselines=tmp_path / "first", **(kwargs | {"group_sizes": (2,)}))
    with pytest.raises(ValueError, match="max_new_tokens"):
        evaluate("knowledge", path, reuse_baselines=tmp_path / "first", **(kwargs | {"max_new_tokens": 5}))
    with pytest.raises(ValueError, match="Cannot reuse baselines from .*missing"):
        evaluate("knowledge", path, reuse_baselines=tmp_path / "missing", **kwargs)


@pytest.mark.parametrize("lines, message", [
    ([{"context": "A text.", "questions": [{"question": "q?", "answers": ["a"]}]}, {"context": "B."}],
     r"knowledge.jsonl:2: missing key 'questions'"),
    ([{"context": "   ", "questions": [{"question": "q?", "answers": ["a"]}]}], r":1: 'context' is empty"),
    ([{"context": "A.", "questions": []}], r"questions is an empty list"),
    ([{"context": "A.", "questions": [{"question": "q?"}]}], r"missing key 'answers'"),
    ([{"context": "A.", "questions": [{"question": "q?", "answers": []}]}], r"'answers' is an empty list"),
    (["not an object"], r"expected a JSON object"),
])
def test_bad_knowledge_files(tmp_path, lines, message):
    path = write_jsonl(tmp_path / "knowledge.jsonl", lines)
    with pytest.raises(EvalDataError, match=message):
        load_documents(path)


def test_bad_files_of_other_tasks(tmp_path, model, tokenizer):
    (tmp_path / "broken.jsonl").write_text('{"context": "A."\n', encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"broken.jsonl:1: not valid JSON"):
        load_documents(tmp_path / "broken.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="has no records"):
        load_episodes(tmp_path / "empty.jsonl")
    with pytest.raises(EvalDataError, match="missing key 'demonstrations'"):
        load_episodes(write_jsonl(tmp_path / "d1.jsonl", [{"queries": [{"input": "x", "output": "y"}]}]))
    with pytest.raises(EvalDataError, match="not one of the options"):
        load_episodes(write_jsonl(tmp_path / "d2.jsonl", [
            {"demonstrations": [{"input": "x", "output": "yes"}], "queries": [{"input": "z", "output": "maybe"}],
             "options": ["yes", "no"]}]))
    with pytest.raises(EvalDataError, match="missing key 'probes' or 'next'"):
        load_conversations(write_jsonl(tmp_path / "c1.jsonl", [{"history": HISTORY}]))
    with pytest.raises(EvalDataError, match="'history' is an empty list"):
        load_conversations(write_jsonl(tmp_path / "c2.jsonl", [{"history": [], "probes": []}]))
    with pytest.raises(EvalDataError, match="mixes"):
        load_conversations(write_jsonl(tmp_path / "c3.jsonl", [
            {"history": HISTORY, "probes": [{"question": "q", "answers": ["a"]}]},
            {"history": HISTORY, "next": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        ]))
    with pytest.raises(EvalDataError, match="no record has an assistant reply after a user message"):
        load_conversations(write_jsonl(tmp_path / "c4.jsonl", [
            {"history": HISTORY, "next": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]}]))
    # through evaluate: the file is checked before any model is loaded (this model path does not exist)
    with pytest.raises(EvalDataError, match="missing key 'context'"):
        evaluate("knowledge", write_jsonl(tmp_path / "k.jsonl", [{"questions": []}]), model=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        evaluate("knowledge", tmp_path / "missing.jsonl", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="Unknown task"):
        evaluate("summaries", tmp_path / "k.jsonl", model=model, tokenizer=tokenizer)


# ---- command line -------------------------------------------------------------------------------------------------
def test_cli_subcommand_end_to_end(tmp_path, tokenizer, capsys):
    from peft_generative.cli import build_parser, main

    model_dir = tmp_path / "tiny"
    small_base(tokenizer, max_positions=1024).save_pretrained(model_dir)  # the default window is 1024
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "cli_out"
    argv = ["eval", "--task", "knowledge", "--data", str(knowledge_file(tmp_path)), "--model", str(model_dir),
            "--limit", "2", "--group-sizes", "1,2", "--max-new-tokens", "3", "--max-questions", "1", "--out", str(out),
            "--no-progress"]
    assert build_parser().parse_args(argv).group_sizes == [1, 2]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| method | score | EM |" in printed.out and "untrained" in printed.err
    saved = json.loads((out / "results.json").read_text())
    assert saved["generator_trained"] is False and saved["settings"]["limit"] == 2
    assert all(s["answers"] == 4 for s in saved["methods"].values())  # 2 contexts per group size, 1 question each
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--task", "knowledge", "--data", "x", "--group-sizes", "0,a"])
    # a missing or malformed data file is a usage error (2), found before any model is loaded
    assert main(["eval", "--task", "knowledge", "--data", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "bad.jsonl").write_text('{"no": "context"}\n')
    assert main(["eval", "--task", "knowledge", "--data", str(tmp_path / "bad.jsonl"), "--model", "/nowhere"]) == 2
    assert "--model /nowhere" in capsys.readouterr().err


def test_cli_names_agree_with_the_library():
    """The eval/bench choices are spelled out in the CLI (so that --help does not import torch): they must agree."""
    from peft_generative import benchmark, evaluation
    from peft_generative.cli import bench as bench_cli, common, evaluate as eval_cli

    assert set(eval_cli.TASKS) == set(evaluation.TASKS)
    assert tuple(eval_cli.ALL_METHODS) == tuple(evaluation.ALL_METHODS)
    assert tuple(eval_cli.METHODS) == tuple(evaluation.METHODS)
    assert tuple(eval_cli.DEFAULT_BUCKETS) == tuple(evaluation.DEFAULT_BUCKETS)
    assert tuple(eval_cli.DEFAULT_GROUP_SIZES) == tuple(evaluation.DEFAULT_GROUP_SIZES)
    assert tuple(bench_cli.FIGURES) == tuple(benchmark.FIGURES) and set(bench_cli.DTYPES) == set(benchmark.DTYPES)
    from peft_generative.tuner.peft_type import PEFT_TYPE_NAME

    assert common.GENERATOR_TYPE == PEFT_TYPE_NAME


def test_knowledge_probes_scaled_adapters_and_contrastive_scoring(tmp_path, model, tokenizer, monkeypatch, capsys):
    """examples/scripts/knowledge_probes.py: a scaled context changes only the delta (0 = base model, 1 = as
    generated), and its two gold-answer scorings (the engine's, and its own logits at alpha 0) agree."""
    probes = load_example_script("knowledge_probes")
    docs = load_documents(knowledge_file(tmp_path))
    engine = Engine(model, tokenizer, max_new_tokens=4)
    contexts = [engine.contextualize(d["context"])[0] for d in docs]
    ids = torch.tensor([engine.chat_ids("What colour is the lantern?")])

    def logits(ctx):
        with torch.no_grad(), model.use_context(ctx):
            return model(input_ids=ids).logits

    base, own = logits(None), logits(contexts[0])
    assert not torch.allclose(own, base)
    assert torch.equal(logits(probes.scaled(contexts[0], 1.0)), own)
    assert torch.equal(logits(probes.scaled(contexts[0], 0.0)), base)
    assert not torch.allclose(logits(probes.scaled(contexts[0], 2.0)), own)

    queries = [d["questions"][0] for d in docs]
    by_scale = probes.probe_scale(engine, contexts, queries, [1.0, 0.0])
    by_alpha = probes.probe_contrast(model, engine, contexts, queries, [0.0, 1.0])
    for key in ("gold_ppl_own", "gold_ppl_other"):
        assert by_scale[0][key] == pytest.approx(by_alpha[0][key], rel=1e-4)
    assert by_scale[1]["gold_ppl_own"] == pytest.approx(by_scale[1]["gold_ppl_other"])  # both the base model
    for row in by_scale:  # the F1 is the mean over all queries of the listed overlapping answers' F1
        assert row["f1"] == pytest.approx(sum(a["f1"] for a in row["answers_with_overlap"]) / len(queries))
        assert all(a["f1"] > 0 for a in row["answers_with_overlap"])
    assert by_alpha[1]["gold_ppl_own"] != pytest.approx(by_alpha[0]["gold_ppl_own"])
    recall = probes.probe_recall(model, tokenizer, contexts[:2], docs[:2], max_new_tokens=4)
    assert recall["passages"] == 2 and 0 <= recall["answer_recalled"] <= 2 and len(recall["examples"]) == 2
    # examples/scripts/plot_knowledge_probes.py reads the probe's JSON (as main() writes it) and plots it by step
    (tmp_path / "probe.json").write_text(json.dumps({"scale": by_scale}))
    (tmp_path / "base.json").write_text(json.dumps({"scale": by_scale[1:]}))
    plot = load_example_script("plot_knowledge_probes")
    monkeypatch.setattr(sys, "argv", ["plot_knowledge_probes.py", f"90={tmp_path / 'probe.json'}",
                                      f"0={tmp_path / 'base.json'}", "--out", str(tmp_path / "phase.png")])
    capsys.readouterr()
    plot.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("    0 steps") and lines[1].startswith("   90 steps")  # in step order
    assert f"own {by_scale[0]['gold_ppl_own']:.1f} / control {by_scale[0]['gold_ppl_other']:.1f}" in lines[1]
    assert (tmp_path / "phase.png").stat().st_size > 0
    for bad, message in ((f"x={tmp_path / 'probe.json'}", "is not STEPS=PATH"),
                         (f"5={tmp_path / 'phase.png'}", "is not a knowledge_probes.py result")):
        monkeypatch.setattr(sys, "argv", ["plot_knowledge_probes.py", bad, "--out", str(tmp_path / "bad.png")])
        with pytest.raises(SystemExit, match=message):
            plot.main()
    assert not (tmp_path / "bad.png").exists()


def test_knowledge_probes_oracle_state_lowers_reconstruction_and_leaves_the_context(tmp_path, model, tokenizer):
    probes = load_example_script("knowledge_probes")
    docs = load_documents(knowledge_file(tmp_path, n=2))
    engine = Engine(model, tokenizer, max_new_tokens=4)
    ctx = engine.contextualize(docs[0]["context"])[0]
    kept = {k: v.clone() for k, v in ctx.states.items()}
    ids = torch.tensor([engine.token_ids(docs[0]["context"])])
    oracle, before, after = probes.oracle_context(ctx, ids, steps=8, lr=0.05)
    assert after < before - 1e-3
    assert all(torch.equal(ctx.states[k], kept[k]) for k in kept)  # the generated context is not modified
    assert not any(torch.equal(oracle.states[k], kept[k]) for k in kept)
    assert all(p.grad is None for p in model.parameters())  # only the states were differentiated
    result = probes.probe_oracle(model, tokenizer, engine, [ctx], docs[:1], steps=2, lr=0.05)
    assert result["reconstruction_nll_oracle"] < result["reconstruction_nll_generated"]
    assert set(result["fitted_to_passage"]) == {"scale", "f1", "gold_ppl_own", "gold_ppl_other",
                                                "answers_with_overlap"}
    # a state fitted to the gold answer makes it less perplexing than the generated state does
    assert result["fitted_to_answer"]["gold_ppl_own"] < result["generated"]["gold_ppl_own"]


def test_plot_facts_by_type_scores_each_question_type_from_the_predictions(tmp_path, capsys):
    import json

    from peft_generative.data import write_jsonl

    from .conftest import load_example_script

    data = tmp_path / "facts.eval.jsonl"
    write_jsonl(data, [{"context": "c", "questions": [
        {"question": "code?", "answers": ["1"], "type": "code"},
        {"question": "who?", "answers": ["A"], "type": "person"},
        {"question": "when?", "answers": ["2"], "type": "year"}]}])
    rows = [("adapter", "code?", 1.0), ("adapter", "who?", 0.0), ("adapter", "when?", 1.0),
            ("adapter_other_context", "code?", 0.0), ("adapter_other_context", "who?", 1.0),
            ("prompting", "when?", 1.0), ("adapter", "not in the data file", 1.0)]
    write_jsonl(tmp_path / "run" / "predictions.jsonl", [{"method": m, "question": q, "em": e} for m, q, e in rows])
    script = load_example_script("plot_facts_by_type")
    script.main(["--data", str(data), "--run", f"now={tmp_path / 'run'}", "--out", str(tmp_path / "types.png")])
    printed = json.loads(capsys.readouterr().out.split("wrote")[0])
    assert printed["now: adapter"] == {"code": 100.0, "person": 0.0, "year": 100.0}
    assert printed["now: another document's adapter"] == {"code": 0.0, "person": 100.0, "year": 0.0}
    assert printed["now: context in prompt"]["year"] == 100.0
    assert (tmp_path / "types.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        script.main(["--data", str(data), "--run", "no-directory", "--out", str(tmp_path / "x.png")])


def test_plot_levers_reads_each_runs_results_and_redraws_from_its_json(tmp_path, capsys):
    import json

    from .conftest import load_example_script

    def results(directory, f1, em, ppl):
        directory.mkdir()
        method = {"score": f1, "exact_match": em, "answer_perplexity": ppl}
        (directory / "results.json").write_text(json.dumps({
            "generator": str(directory), "data_file": "data/test.eval.jsonl",
            "methods": {"adapter": method, "prompting": {"score": 10.0, "exact_match": 0.0, "answer_perplexity": 22.0}},
        }))

    results(tmp_path / "a", 23.15, 19.58, 9.01)
    results(tmp_path / "b", 8.38, 6.67, 15.26)
    script = load_example_script("plot_levers")
    numbers, png = tmp_path / "levers.json", tmp_path / "levers.png"
    script.main(["--run", f"base={tmp_path / 'a'}", "--run", f"distill={tmp_path / 'b'}", "--json", str(numbers),
                 "--out", str(png)])
    rows = json.loads(numbers.read_text())
    assert list(rows) == ["base", "distill"]
    assert rows["distill"]["adapter"] == {"f1": 8.38, "em": 6.67, "gold_ppl": 15.26}
    assert rows["base"]["prompting"]["gold_ppl"] == 22.0
    assert "distill: F1 8.4 / EM 6.7, gold PPL 15.26" in capsys.readouterr().out
    png.unlink()
    script.main(["--from-json", str(numbers), "--out", str(png)])
    assert png.stat().st_size > 0
    with pytest.raises(SystemExit):
        script.main(["--run", "no-label-or-directory", "--out", str(png)])
