"""The training recipes in examples/configs parse with the training script's parser and form one chain.

A key the dataclasses do not know, or a stage that starts from a generator no earlier stage writes, would only
show up after minutes of data loading; these tests catch it without training.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from peft_generative.training.script import make_parser

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def parse(path: Path):
    return make_parser().parse_args_and_config(["--config", str(path)])


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_parses_with_the_training_script(path):
    script_args, training_args = parse(path)
    assert Path(script_args.train_file).parts[0] == "data"
    assert training_args.max_steps > 0 and training_args.save_steps <= training_args.max_steps


def test_recipes_chain_from_one_fresh_generator_to_the_shipped_recipe():
    parsed = {path.name: parse(path) for path in RECIPES}
    outputs = {training_args.output_dir: name for name, (_, training_args) in parsed.items()}
    assert len(outputs) == len(parsed), "two recipes write the same output_dir"
    fresh = [name for name, (script_args, _) in parsed.items() if script_args.init_generator is None]
    assert fresh == ["pretrain_smollm2.yaml"]
    # a stage may also start from what examples/scripts/fact_capability.py writes (`<out>/<name>/generator`)
    capability = {name for name, (script_args, _) in parsed.items()
                  if Path(script_args.init_generator or "").name == "generator"}
    assert capability <= {"facts_replay_smollm2.yaml"}
    for name, (script_args, _) in parsed.items():
        if script_args.init_generator is None or name in capability:
            continue
        stage_dir, checkpoint = Path(script_args.init_generator).parent, Path(script_args.init_generator).name
        assert str(stage_dir) in outputs, f"{name} starts from {stage_dir}, which no recipe writes"
        _, previous = parsed[outputs[str(stage_dir)]]
        assert checkpoint == f"checkpoint-{previous.max_steps}", f"{name} does not start from the end of {stage_dir}"
    # the instruction-tuning recipe is the end of the chain: nothing starts from it
    sft_dir = parsed["sft_mixture_smollm2.yaml"][1].output_dir
    assert all(Path(s.init_generator or "").parent != Path(sft_dir) for s, _ in parsed.values())


def test_unknown_recipe_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "pretrain_smollm2.yaml").read_text() + "reconstruction_wieght: 0.5\n")
    with pytest.raises(ValueError, match="reconstruction_wieght"):
        parse(bad)


def test_a_token_gate_can_be_added_to_a_saved_generator(tmp_path):
    import torch
    from peft import get_peft_model

    import peft_generative as pg
    from peft_generative.training.script import load_generator_for_training

    from .conftest import randomize_generator, tiny_model

    saved = randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(
        task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=32)))
    saved.save_pretrained(tmp_path / "gen")
    gated = load_generator_for_training(tiny_model(), str(tmp_path / "gen"), token_gate=True)
    assert gated.peft_config["default"].token_gate
    assert any("generator_gate" in n and p.requires_grad for n, p in gated.named_parameters())
    ids = [list(range(5, 40))]
    for (a, b), (ga, gb) in zip(saved.contextualize(ids).factors.values(), gated.contextualize(ids).factors.values()):
        torch.testing.assert_close(a, ga)  # a fresh gate changes nothing under svd normalisation
        torch.testing.assert_close(b, gb)


def test_fact_capability_checkpoints_resume_exactly(tmp_path):
    import torch
    from peft import get_peft_model

    import peft_generative as pg

    from .conftest import load_example_script, randomize_generator, tiny_model

    script = load_example_script("fact_capability")

    def fresh():
        model = randomize_generator(get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(
            task_type="CAUSAL_LM", key_dim=8, value_dim=8, rank=4, window=32, token_gate=True)))
        params = [p for n, p in model.named_parameters() if "generator_" in n]
        for n, p in model.named_parameters():
            p.requires_grad_("generator_" in n)
        return model, torch.optim.AdamW(params, lr=1e-2)

    model, optimizer = fresh()
    for _ in range(2):
        ctx = model.contextualize([list(range(5, 30))], requires_grad=True, activate=False)
        with model.use_context(ctx):
            model(torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    script.save(tmp_path, model, optimizer, {"step": 2, "cpu": 1.0, "wall": 1.0, "probes": []})
    again, again_optimizer = fresh()
    assert script.restore(tmp_path, again, again_optimizer)["step"] == 2
    for (name, p), (_, q) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(p, q), name
    for p, q in zip(optimizer.param_groups[0]["params"], again_optimizer.param_groups[0]["params"]):
        for key in optimizer.state[p]:
            assert torch.equal(torch.as_tensor(optimizer.state[p][key]), again_optimizer.state[q][key]), key
    args = script.parse(["--name", "x"])
    assert script.train_document(7, args) == script.train_document(7, args)  # the training stream is deterministic
    narrow = script.parse(["--name", "x", "--train-names", "narrow"])  # the first generators' names, for ablations
    fact = next(i for i in range(20) if "facts" in script.train_document(i, args)["id"])
    assert script.train_document(fact, narrow)["context"] != script.train_document(fact, args)["context"]


def test_facts_replay_mixture_asks_every_question_of_a_document_in_one_row(tmp_path):
    from peft_generative.data import build_synthetic_facts_dataset, read_jsonl, write_jsonl

    from .conftest import load_example_script

    build_synthetic_facts_dataset(tmp_path / "synthetic_facts", train_documents=20, heldout_documents=2)
    write_jsonl(tmp_path / "pretraining" / "train.jsonl", [{"text": f"document {i} " * 50} for i in range(5)])
    script = load_example_script("facts_replay_mixture")
    counts = script.build(tmp_path, tmp_path / "mix.jsonl", text_documents=3)
    rows = list(read_jsonl(tmp_path / "mix.jsonl"))
    assert counts == {"fact_documents": 20, "text_documents": 3, "rows": 23} and len(rows) == 23
    questions = {(r["context"], r["prompt"], r["completion"])
                 for r in read_jsonl(tmp_path / "synthetic_facts" / "train.jsonl")}
    asked = {(r["context"], u["content"], a["content"]) for r in rows if r["context"]
             for u, a in zip(r["messages"][::2], r["messages"][1::2])}
    assert asked == questions  # every question once, with its own document
    assert all(set(r) == {"context", "messages", "text", "task"} for r in rows)
    assert sum(bool(r["text"]) for r in rows) == 3
    # grouped rows: several documents in one context, each question asked with the document that answers it
    counts = script.build(tmp_path, tmp_path / "grouped.jsonl", text_documents=3, grouped=6, max_group=4)
    assert counts == {"fact_documents": 20, "text_documents": 3, "rows": 29, "grouped": 6}
    by_question = {(p, c): ctx for ctx, p, c in questions}
    grouped = [r for r in read_jsonl(tmp_path / "grouped.jsonl") if "\n\n" in r["context"]]
    assert len(grouped) == 6 and all(2 <= r["context"].count("\n\n") + 1 <= 4 for r in grouped)
    for row in grouped:
        pairs = list(zip(row["messages"][::2], row["messages"][1::2]))
        members = row["context"].split("\n\n")
        asked_there = Counter(p for ctx, p, _ in questions if ctx in members)
        unambiguous = sum(n == 1 for n in asked_there.values())  # two needles both ask for "the secret code"
        assert len(pairs) == min(4, unambiguous) > 0
        assert all(asked_there[u["content"]] == 1 for u, _ in pairs)
        assert all(by_question[(u["content"], a["content"])] in row["context"].split("\n\n") for u, a in pairs)
    with pytest.raises(ValueError, match="max-group"):
        script.build(tmp_path, tmp_path / "bad.jsonl", grouped=2, max_group=1)
    # articles (free prose) join the mixture with all their questions in one row; --facts keeps the first N documents
    from peft_generative.data import build_synthetic_articles_dataset

    build_synthetic_articles_dataset(tmp_path / "synthetic_articles", train_documents=5, heldout_documents=1)
    counts = script.build(tmp_path, tmp_path / "articles.jsonl", text_documents=0, articles=4, facts=10)
    assert counts == {"fact_documents": 10, "text_documents": 0, "rows": 14, "articles": 4}
    stories = [r for r in read_jsonl(tmp_path / "articles.jsonl") if r["task"] == "synthetic_articles"]
    assert len(stories) == 4 and all(len(r["messages"]) == 12 for r in stories)
    assert all(a["content"].lower() in r["context"].lower() for r in stories for a in r["messages"][1::2])
    with pytest.raises(ValueError, match="only 5 articles"):
        script.build(tmp_path, tmp_path / "bad.jsonl", articles=6)


def test_fact_capability_takes_a_band_of_layers():
    from .conftest import load_example_script

    script = load_example_script("fact_capability")
    assert script.parse(["--name", "x", "--layers", "0-3"]).layers == [0, 1, 2, 3]
    assert script.parse(["--name", "x", "--layers", "5,7"]).layers == [5, 7]
    assert script.parse(["--name", "x"]).layers is None
    for bad in ("a-b", "-1,2", ""):
        with pytest.raises(SystemExit):
            script.parse(["--name", "x", "--layers", bad])
