"""The issue-32 measuring tools of the example scripts: fact_capability's scoring by answer kind and its grown state,
and plot_copy_levers' reading of runs."""

import json

import pytest
import torch

from .conftest import load_example_script


def test_fact_capability_scores_gold_contained_by_kind():
    script = load_example_script("fact_capability")
    questions = [{"answers": ["Port Aldane"], "type": "place", "kind": "place"},
                 {"answers": ["1952"], "type": "year", "kind": "digits"},
                 {"answers": ["212"], "type": "count", "kind": "digits"},
                 {"answers": ["systems analyst"], "type": "occupation", "kind": "word"}]
    predictions = ["The ferry leaves from Port Aldane.", "1952", "2120 steps", "analyst"]
    result = script.score(predictions, questions)
    assert result["EM"] == 25.0 and result["contains"] == 50.0  # "212" is not contained in "2120"
    assert result["by_kind"]["contains"] == {"digits": 50.0, "place": 100.0, "word": 0.0}
    assert result["by_kind"]["EM"] == {"digits": 50.0, "place": 0.0, "word": 0.0}
    assert result["EM_by_type"] == {"count": 0.0, "occupation": 0.0, "place": 0.0, "year": 100.0}
    assert 0 < result["by_kind"]["F1"]["word"] < 100


def test_fact_capability_grows_a_state_from_the_saved_block():
    script = load_example_script("fact_capability")
    saved = torch.arange(6.0).view(2, 3)
    target = torch.full((4, 3), -1.0)
    out = script.grown(target, saved)
    assert torch.equal(out[:2], saved) and torch.equal(out[2:], target[2:])
    assert script.grown(saved, saved) is saved
    columns = script.grown(torch.zeros(2, 5), saved)  # B: d_out x r grows in its columns
    assert torch.equal(columns[:, :3], saved) and not columns[:, 3:].any()


def write_run(directory, probes, final=None):
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps({"step": 100, "cpu": 900.0, "wall": 1000.0, "probes": probes}))
    if final is not None:
        (directory / "result.json").write_text(json.dumps(final))


def measures(contains, nll=2.0):
    return {"EM": contains / 2, "F1": contains / 2, "contains": contains, "nll": nll,
            "by_kind": {"EM": {}, "F1": {}, "contains": {"word": contains}}}


def test_plot_copy_levers_reads_probes_and_final_results(tmp_path):
    script = load_example_script("plot_copy_levers")
    probes = [{"step": s, "cpu": s * 9, "words": {"contains": c, "own_nll": 2.0}, "facts": {"contains": 70.0},
               "needle": {"own_nll": 0.1}} for s, c in ((0, 10.3), (40, 5.2), (100, 12.0))]
    final = {"words": {"own": measures(12.5), "control": measures(1.0, 3.0)},
             "baselines_words": {"prompting": measures(40.0), "closed_book": measures(0.0)},
             "words_unseen": {"own": measures(8.0), "control": measures(0.0, 3.0)},
             "baselines_words_unseen": {"prompting": measures(30.0), "closed_book": measures(0.0)}}
    write_run(tmp_path / "a", probes, final)
    write_run(tmp_path / "b", probes[:2])  # still running: a curve, no final point
    out, numbers = tmp_path / "plot.png", tmp_path / "numbers.json"
    script.main(["--run", f"done={tmp_path / 'a'}", "--run", f"running={tmp_path / 'b'}", "--json", str(numbers),
                 "--out", str(out)])
    rows = json.loads(numbers.read_text())
    assert rows["done"]["curve"]["words"] == [[0, 10.3], [360, 5.2], [900, 12.0]]
    assert rows["done"]["final"]["words"]["adapter"]["contains"] == 12.5
    assert rows["done"]["final"]["words"]["prompting_contains"] == 40.0
    assert rows["done"]["final"]["words_unseen"]["control_contains"] == 0.0
    assert rows["done"]["final"]["words"]["gold_nll"] == [2.0, 3.0]
    assert "final" not in rows["running"] and out.stat().st_size > 0
    again = tmp_path / "again.png"
    script.main(["--from-json", str(numbers), "--out", str(again)])
    assert again.stat().st_size > 0
    three = tmp_path / "three.png"  # other held-out sets; one without a curve in these runs draws nothing there
    script.main(["--from-json", str(numbers), "--out", str(three), "--panels", "words,word_needle_bare,facts"])
    assert three.stat().st_size > 0
    with pytest.raises(SystemExit) as e:
        script.main(["--from-json", str(numbers), "--out", str(three), "--panels", "words,nonsense"])
    assert e.value.code == 2


def test_fact_capability_keeps_the_loaded_generators_architecture():
    script = load_example_script("fact_capability")
    shipped = json.loads((load_example_script("fact_capability").shipped_generator_path()
                          / "adapter_config.json").read_text())
    plain = script.config_kwargs(script.parse(["--name", "x"]), shipped)
    assert plain["token_gate"] is True and plain["key_dim"] == shipped["key_dim"]  # the shipped gate comes along
    fresh = script.config_kwargs(script.parse(["--name", "x", "--init", "fresh"]), shipped)
    assert fresh["token_gate"] is False and "key_conv" not in fresh
    saved = {**shipped, "token_gate": False, "key_conv": 2, "value_lookahead": 1, "value_source": "next_embedding"}
    again = script.config_kwargs(script.parse(["--name", "x", "--init", "somewhere"]), saved)
    assert (again["key_conv"], again["value_lookahead"], again["value_source"]) == (2, 1, "next_embedding")
    assert again["token_gate"] is False
    more = script.config_kwargs(script.parse(["--name", "x", "--init", "d", "--key-conv", "3", "--token-gate"]), saved)
    assert more["key_conv"] == 3 and more["token_gate"] is True
    assert script.parse(["--name", "x", "--needle-filler", "0-6"]).needle_filler == (0, 6)


def test_fact_capability_caches_baselines_per_set(tmp_path, monkeypatch):
    script = load_example_script("fact_capability")
    computed = []
    monkeypatch.setattr(script, "baselines", lambda model, tok, docs: computed.append(len(docs)) or {"n": len(docs)})
    sets = {"a": [{"id": "a0"}], "b": [{"id": "b0"}, {"id": "b1"}]}
    path = tmp_path / "baselines.json"
    assert script.cached_baselines(path, None, None, sets) == {"a": {"n": 1}, "b": {"n": 2}} and computed == [1, 2]
    assert script.cached_baselines(path, None, None, sets) == {"a": {"n": 1}, "b": {"n": 2}} and computed == [1, 2]
    grown = {**sets, "c": [{"id": "c0"}] * 3}  # a set added later is computed alone
    assert script.cached_baselines(path, None, None, grown)["c"] == {"n": 3} and computed == [1, 2, 3]
    changed = {"a": [{"id": "other"}]}  # changed documents are recomputed; the rest of the cache stays
    assert script.cached_baselines(path, None, None, changed) == {"a": {"n": 1}} and computed == [1, 2, 3, 1]
    assert set(json.loads(path.read_text())["results"]) == {"a", "b", "c"}


def test_fact_capability_mixes_needle_subjects():
    script = load_example_script("fact_capability")
    args = script.parse(["--name", "x", "--data", "needles", "--needle-subjects", "name, place,name", "--needle-filler",
                         "0-0"])
    assert args.needle_subjects == ("name", "place")
    docs = [script.train_document(i, args) for i in range(40)]
    kinds = {d["questions"][0]["kind"] for d in docs}
    assert kinds == {"name", "place"} and all(d["context"].count(".") == 1 for d in docs)
    default = script.parse(["--name", "x", "--data", "needles"])
    assert default.needle_subjects == ("word",)  # the word needles of stop 32, unchanged
    assert script.train_document(3, default) == script.word_needle_document("train", 3, 0)
    for bad in ("", "word,colour"):
        with pytest.raises(SystemExit):
            script.parse(["--name", "x", "--needle-subjects", bad])


def test_fact_capability_evaluates_only_the_sets_asked():
    script = load_example_script("fact_capability")
    args = script.parse(["--name", "x", "--eval-sets", "name_needle, place_needle"])
    sets = script.eval_sets(2, 0, args.eval_sets)
    assert list(sets) == ["name_needle", "place_needle"]
    assert {q["kind"] for d in sets["name_needle"] for q in d["questions"]} == {"name"}
    assert list(script.eval_sets(1, 0)) == list(script.EVAL_SETS)
    with pytest.raises(SystemExit):
        script.parse(["--name", "x", "--eval-sets", "words,novels"])


def test_fact_capability_trains_and_evaluates_the_lookup_on_several_needles():
    script = load_example_script("fact_capability")
    args = script.parse(["--name", "x", "--data", "needles", "--needle-subjects", "name,place", "--needles-per-doc",
                         "3-3", "--needle-filler", "0-0"])
    docs = [script.train_document(i, args) for i in range(20)]
    assert all(len(d["questions"]) == 3 and d["context"].count(".") == 3 for d in docs)
    assert {q["kind"] for d in docs for q in d["questions"]} == {"name", "place"}
    held_out = script.eval_sets(4, 0, ("multi_needle",))["multi_needle"]
    assert all(2 <= len(d["questions"]) <= 4 for d in held_out)
    with pytest.raises(SystemExit):  # one word needle is all a document can tell apart
        script.parse(["--name", "x", "--needle-subjects", "word", "--needles-per-doc", "2-2"])


def test_fact_capability_decays_the_learning_rate_over_the_last_cpu_seconds():
    script = load_example_script("fact_capability")
    assert script.decay_factor(100.0, None, 900.0) == 1.0  # default: constant
    assert script.decay_factor(500.0, 500.0, 900.0) == 1.0
    assert script.decay_factor(700.0, 500.0, 900.0) == pytest.approx(0.5)
    assert script.decay_factor(950.0, 500.0, 900.0) == 0.0  # a step that overran the budget never goes negative
    assert script.parse(["--name", "x", "--cpu-budget", "900", "--decay-from", "600"]).decay_from == 600.0
    for bad in ("900", "-1"):
        with pytest.raises(SystemExit):
            script.parse(["--name", "x", "--cpu-budget", "900", "--decay-from", bad])


def test_fact_capability_trains_on_value_first_statements():
    script = load_example_script("fact_capability")
    args = script.parse(["--name", "x", "--data", "words", "--needle-fraction", "0", "--value-first", "1"])
    default = script.parse(["--name", "x", "--data", "words", "--needle-fraction", "0"])
    turned = [script.train_document(i, args) for i in range(10)]
    plain = [script.train_document(i, default) for i in range(10)]
    assert all(d["id"].endswith("-vf1") for d in turned)
    answers = [[q["answers"] for q in d["questions"]] for d in plain]
    assert [[q["answers"] for q in d["questions"]] for d in turned] == answers

    def value_first(docs):
        return sum(f"{q['answers'][0]} is " in d["context"] or f"{q['answers'][0]} was " in d["context"]
                   for d in docs for q in d["questions"])

    assert value_first(turned) > value_first(plain) + 5
    with pytest.raises(SystemExit):
        script.parse(["--name", "x", "--value-first", "1.5"])


def test_copy_errors_sorts_answers_by_value_position_and_error_kind(tmp_path):
    errors = load_example_script("copy_errors")
    context = "Anaru Knox is the spouse of Indie. Indie's town is Port Aldane. Rain fell."
    assert errors.value_position(context, "Anaru Knox") == "first"
    assert errors.value_position(context, "Port Aldane") == "last"
    assert errors.value_position(context, "Sligo") == "?"
    assert errors.error_kind("It is Port Aldane.", "Port Aldane", context) == "right"
    assert errors.error_kind("Port Aldene", "Port Aldane", context) == "near"
    assert errors.error_kind("Anaru Knox", "Port Aldane", context) == "span"
    assert errors.error_kind("Dublin", "Port Aldane", context) == "elsewhere"
    script = load_example_script("fact_capability")
    docs = script.eval_sets(3, 0, ("words_one",))["words_one"]
    answers = [q["answers"][0] for d in docs for q in d["questions"]]
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"args": {"n_eval": 3, "seed": 0},
                                                 "words_one": {"own": {"predictions": answers}}}))
    counts = errors.run_breakdown(run)["words_one"]
    words = sum(q["kind"] != "digits" for d in docs for q in d["questions"])
    assert counts["errors"] == {"right": words, "near": 0, "span": 0, "elsewhere": 0}
    assert sum(c["own"] for c in counts["position"].values()) == words
    with pytest.raises(ValueError, match="not the documents"):
        errors.breakdown(docs, answers[:-1], None)
    with pytest.raises(SystemExit):
        errors.main([str(tmp_path / "missing")])


def test_fact_capability_resumes_a_checkpoint_into_a_generator_that_adapts_one_more_module(tmp_path):
    """`--target o_proj,down_proj` on a run saved with `o_proj` alone: the saved parts and their Adam moments come back,
    the added module starts fresh (its delta at zero) with a fresh optimizer state."""
    from peft import get_peft_model

    from peft_generative import GenerativeAdapterConfig

    from .conftest import tiny_model

    script = load_example_script("fact_capability")
    assert script.parse(["--name", "x", "--target", "o_proj,down_proj"]).target == ["o_proj", "down_proj"]
    assert script.parse(["--name", "x"]).target == ["o_proj"]

    def trained(targets):
        config = GenerativeAdapterConfig(target_modules=targets, key_dim=8, value_dim=8, rank=4, window=64)
        model = get_peft_model(tiny_model(), config)
        params = [p for n, p in model.named_parameters() if "generator_" in n]
        return model, torch.optim.AdamW(params, lr=1e-3)

    old, old_opt = trained(["o_proj"])
    for p in old_opt.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    old_opt.step()
    script.save(tmp_path, old, old_opt, {"step": 1, "cpu": 1.0, "wall": 1.0, "probes": []})

    new, new_opt = trained(["o_proj", "down_proj"])
    assert script.restore(tmp_path, new, new_opt)["step"] == 1
    saved = dict(old.named_parameters())
    for name, param in new.named_parameters():
        if "generator_" not in name:
            continue
        if "o_proj" in name:
            assert torch.equal(param, saved[name])
            moments = old_opt.state[saved[name]]
            assert torch.equal(new_opt.state[param]["exp_avg"], moments["exp_avg"])
        else:
            assert "down_proj" in name and param not in new_opt.state
            if "generator_B" in name:
                assert not param.any()  # the added module's delta starts at zero
