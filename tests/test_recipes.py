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


SHIPPED_GENERATOR = "peft_generative/assets/generator"


def parse(path: Path, *overrides: str):
    # as on this CPU machine: TrainingArguments refuses `bf16: true` without a GPU unless the run is on the CPU
    return make_parser().parse_args_and_config(["--config", str(path), "--use_cpu", "true", *overrides])


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
    # a stage may also start from what examples/scripts/fact_capability.py writes (`<out>/<name>/generator`), or from
    # the shipped generator (the GPU recipe)
    shipped = {name for name, (script_args, _) in parsed.items() if script_args.init_generator == SHIPPED_GENERATOR}
    assert shipped == {"gpu_facts_replay_smollm2.yaml"}
    capability = {name for name, (script_args, _) in parsed.items()
                  if Path(script_args.init_generator or "").name == "generator"} - shipped
    assert capability <= {"facts_replay_smollm2.yaml", "copy_replay_smollm2.yaml"}
    for name, (script_args, _) in parsed.items():
        if script_args.init_generator is None or name in capability | shipped:
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


def test_gpu_recipe_dry_run_on_the_cpu(tmp_path, tokenizer):
    """The GPU recipe as it is, shrunk to a tiny model and two steps on the CPU: bf16 autocast (CPU autocast here),
    SDPA, and checkpoints whose generator also comes as exact files under the recipe's size limit."""
    import json

    import torch
    from peft import get_peft_model
    from safetensors.torch import load_file

    import peft_generative as pg
    from peft_generative.training.script import main
    from peft_generative.training.shards import SHARDS_DIR, join_generator_shards

    from .conftest import small_base

    recipe = CONFIGS / "gpu_facts_replay_smollm2.yaml"
    script_args, training_args = parse(recipe)
    assert training_args.bf16 and script_args.attn_implementation == "sdpa" and script_args.token_gate
    assert not training_args.gradient_checkpointing and training_args.generator_shard_mib < 16
    assert training_args.per_device_train_batch_size * training_args.max_length >= 16384  # tokens per step, GPU-sized
    assert script_args.init_generator == SHIPPED_GENERATOR
    assert (Path(__file__).resolve().parent.parent / SHIPPED_GENERATOR).is_dir()

    base = tmp_path / "base"
    small_base(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    start = tmp_path / "start"
    get_peft_model(small_base(tokenizer), pg.GenerativeAdapterConfig(
        task_type="CAUSAL_LM", key_dim=8, value_dim=8, rank=4, window=64)).save_pretrained(start)
    story = " ".join(f"Keeper number {i} wrote down the tides of the bay every evening." for i in range(40))
    rows = [{"text": story, "context": "", "prompt": "", "completion": ""}] + [
        {"text": "", "context": f"Mira Holt founded Quillmoor in {1700 + i}.", "prompt": "When was Quillmoor founded?",
         "completion": str(1700 + i)} for i in range(6)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    script_args, training_args = parse(
        recipe, "--train_file", str(data), "--init_generator", str(start), "--model_name_or_path", str(base),
        "--output_dir", str(out), "--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "4",
        "--segment_length", "16", "--max_length", "64", "--dataloader_num_workers", "0", "--logging_steps", "1",
        "--generator_shard_mib", "0.005")
    trainer = main(script_args, training_args)

    assert trainer.accelerator.mixed_precision == "bf16"
    assert trainer.model.get_base_model().config._attn_implementation == "sdpa"
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    for saved in (out / "checkpoint-2", out / "final"):
        shards = saved / SHARDS_DIR
        files = sorted(p for p in shards.iterdir() if p.suffix == ".safetensors")
        assert len(files) > 1 and all(p.stat().st_size <= 0.005 * 2**20 for p in shards.iterdir())
        joined = join_generator_shards(str(shards), str(tmp_path / "joined"))
        original = load_file(saved / "adapter_model.safetensors")
        again = load_file(joined / "adapter_model.safetensors")
        assert original.keys() == again.keys() and all(torch.equal(original[k], again[k]) for k in original)
        assert any("generator_gate" in k for k in original)  # the recipe's token gate was added to the start


def test_facts_replay_mixture_takes_word_and_prose_documents(tmp_path):
    from peft_generative.data import build_synthetic_facts_dataset, read_jsonl, write_jsonl
    from peft_generative.data.synthetic_words import build_synthetic_words_dataset

    from .conftest import load_example_script

    build_synthetic_facts_dataset(tmp_path / "synthetic_facts", train_documents=4, heldout_documents=1)
    build_synthetic_words_dataset(tmp_path / "synthetic_words", train_documents=6, heldout_documents=1)
    write_jsonl(tmp_path / "prose_recall" / "train.jsonl", [
        {"id": f"news-{i}#0", "context": f"The plant moved to Town{i} in 1998. It employs {i + 40} people.",
         "prompt": q, "completion": a, "type": "cloze", "kind": k, "task": "prose_recall"}
        for i in range(3)
        for q, a, k in (("Fill in the blank: \"The plant moved to ___ in 1998.\"", f"Town{i}", "name"),
                        ("Fill in the blank: \"It employs ___ people.\"", str(i + 40), "digits"))])
    write_jsonl(tmp_path / "pretraining" / "train.jsonl", [{"text": "some text " * 30}])
    script = load_example_script("facts_replay_mixture")
    counts = script.build(tmp_path, tmp_path / "mix.jsonl", text_documents=1, words=5, prose=2)
    assert counts == {"fact_documents": 4, "text_documents": 1, "rows": 12, "words": 5, "prose": 2}
    rows = list(read_jsonl(tmp_path / "mix.jsonl"))
    prose = [r for r in rows if r["task"] == "prose_recall"]
    assert len(prose) == 2 and all(len(r["messages"]) == 4 for r in prose)  # both questions of a passage, one row
    words = [r for r in rows if r["task"] == "synthetic_words"]
    assert len(words) == 5
    assert all(a["content"] in r["context"] for r in words + prose for a in r["messages"][1::2])
    with pytest.raises(ValueError, match="only 3 prose"):
        script.build(tmp_path, tmp_path / "bad.jsonl", prose=4)
    build_synthetic_words_dataset(tmp_path / "names", train_documents=6, heldout_documents=1, needle_fraction=0.9,
                                  needle_subjects=("name",))
    script.build(tmp_path, tmp_path / "names.jsonl", text_documents=1, words=5, words_data=tmp_path / "names")
    names = [r for r in read_jsonl(tmp_path / "names.jsonl") if r["task"] == "synthetic_words"]
    source = list(read_jsonl(tmp_path / "names" / "train.jsonl"))
    assert len(names) == 5 and {r["context"] for r in names} <= {r["context"] for r in source}  # the other folder's
    assert any(r["context"] in {s["context"] for s in source if s["kind"] == "name"} for r in names)
