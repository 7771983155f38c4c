import json
import math

import pytest
import torch
from datasets import Dataset

import peft_generative as pg
from peft_generative.trainer import GenerativeAdapterTrainer, GenerativeAdapterTrainingConfig

from .conftest import load_example_script, randomize_generator, small_base

WORDS = ("river market stone harbour council quarry salt trader warehouse spring square bridge lantern ferry "
         "mill orchard").split()


def documents(n, seed=0):
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 120))) + "." for _ in range(n)]


def gen_config():
    return pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=32)


def train_args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
                    save_steps=2, report_to=[], num_segments=3, segment_length=16, learning_rate=1e-2,
                    use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    defaults.update(kwargs)
    return GenerativeAdapterTrainingConfig(**defaults)


def frozen_base_snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "generator_" not in n}


def test_self_supervised_training_updates_only_the_generator(tmp_path, tokenizer):
    trainer = GenerativeAdapterTrainer(
        small_base(tokenizer), args=train_args(tmp_path, gradient_checkpointing=True),
        train_dataset=Dataset.from_dict({"text": documents(30)}), processing_class=tokenizer,
        peft_config=gen_config(),
    )
    stats = trainer.packing_stats["train"]
    assert stats["blocks"] * 48 + stats["tokens_left_over"] == stats["tokens"]
    before = frozen_base_snapshot(trainer.model)
    gen_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "generator_" in n}
    trainer.train()
    after = frozen_base_snapshot(trainer.model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    changed = [n for n, p in trainer.model.named_parameters() if "generator_" in n and not torch.equal(p, gen_before[n])]
    assert changed
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs)
    assert all("loss_completion" in h and "loss_reconstruction" in h for h in logs)


def test_instruction_training_with_prompt_completion_and_messages(tmp_path, tokenizer):
    data = Dataset.from_dict({
        "context": ["The lantern of Velmora is green.", "The ferry leaves at noon."] * 2,
        "prompt": ["What colour is the lantern?", "When does the ferry leave?"] * 2,
        "completion": ["Green.", "At noon."] * 2,
    })
    trainer = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, max_steps=2),
                                       train_dataset=data, processing_class=tokenizer, peft_config=gen_config())
    row = trainer.train_dataset[0]
    labelled = [t for t, l in zip(row["input_ids"], row["labels"]) if l != -100]
    assert tokenizer.decode(labelled).strip().startswith("Green.")
    assert "Velmora" not in tokenizer.decode(row["input_ids"])  # the context is never in the prompt
    trainer.train()
    chat = Dataset.from_dict({
        "context": ["The mill grinds barley."] * 2,
        "messages": [[{"role": "user", "content": "What does the mill grind?"},
                      {"role": "assistant", "content": "Barley."}]] * 2,
    })
    trainer2 = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, max_steps=1),
                                        train_dataset=chat, processing_class=tokenizer, peft_config=gen_config())
    trainer2.train()


def mixed_dataset(n_text=12, n_instruction=6):
    """Instruction rows (context + prompt/completion) and text rows (empty context) in one dataset."""
    texts = documents(n_text, seed=4)
    return Dataset.from_dict({
        "context": [""] * n_text + [f"The lantern of house {i} is green." for i in range(n_instruction)],
        "prompt": [""] * n_text + [f"What colour is the lantern of house {i}?" for i in range(n_instruction)],
        "completion": [""] * n_text + ["Green."] * n_instruction,
        "text": texts + [""] * n_instruction,
    })


def test_mixed_dataset_trains_both_objectives(tmp_path, tokenizer):
    trainer = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, max_steps=4,
                                                                              per_device_train_batch_size=6),
                                       train_dataset=mixed_dataset(), processing_class=tokenizer,
                                       peft_config=gen_config())
    stats = trainer.packing_stats["train"]
    assert stats["documents"] == 12 and stats["instruction_rows"] == 6
    prepared = trainer.train_dataset
    assert len(prepared) == stats["blocks"] + 6
    assert sum(1 for b in prepared["block"] if b) == stats["blocks"]

    # one batch holding both kinds: blocks give a completion and a reconstruction row, instructions one row each
    rows = [prepared[0], prepared[1], prepared[len(prepared) - 1]]
    batch = trainer.data_collator(rows)
    assert batch["objective"].tolist() == [0, 0, 1, 1, 2]
    assert batch["context_index"].tolist() == [0, 1, 0, 1, 2]
    assert [isinstance(c, str) for c in batch["context"]] == [False, False, True]
    # the two groups are encoded apart and put back in order: each row is its own context's adapter
    randomize_generator(trainer.model)
    tuner = trainer.tuner
    together = trainer.contextualize(batch["context"])
    for i, context in enumerate(batch["context"]):
        alone = tuner.contextualize([context], tokenizer=tokenizer, activate=False, progress=False)
        for key in alone.factors:
            assert torch.allclose(together.factors[key][1][i], alone.factors[key][1][0], atol=1e-6), (i, key)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "generator_" in n}
    trainer.train()
    assert [n for n, p in trainer.model.named_parameters() if "generator_" in n and not torch.equal(p, before[n])]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 4 and all(math.isfinite(h["loss"]) for h in logs)
    logged = set().union(*logs)
    assert {"loss_completion", "loss_reconstruction", "loss_instruction"} <= logged


def mixed_batch_trainer(tmp_path, tokenizer, config=None, **args):
    """A trainer on `mixed_dataset` with a random generator (of `config`, default `gen_config()`), and one batch of
    a text block and two instruction rows."""
    trainer = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, **args),
                                       train_dataset=mixed_dataset(), processing_class=tokenizer,
                                       peft_config=config or gen_config())
    randomize_generator(trainer.model)
    prepared = trainer.train_dataset
    return trainer, trainer.data_collator([prepared[0], prepared[len(prepared) - 2], prepared[len(prepared) - 1]])


def test_mixed_batch_loss_weighs_instruction_against_text(tmp_path, tokenizer):
    trainer, batch = mixed_batch_trainer(tmp_path, tokenizer, text_weight=0.3)
    model = trainer.model
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        # by hand: each row's next-token NLL with its own adapter, token-averaged per kind
        generated = trainer.contextualize(batch["context"]).rows(batch["context_index"])
        with trainer.tuner.use_context(generated):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                            reduction="none").sum(-1)
    count = (labels != -100).sum(-1)
    text, instruction = batch["objective"] < 2, batch["objective"] == 2
    expected = 0.7 * nll[instruction].sum() / count[instruction].sum() + 0.3 * nll[text].sum() / count[text].sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def answer_nll(trainer, batch, generated):
    """Each row's per-token average answer NLL with the given adapters, by a plain forward."""
    with trainer.tuner.use_context(generated):
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                            reduction="none").sum(-1)
    return nll / (labels != -100).sum(-1)


def test_contrast_loss_compares_own_adapter_with_another_contexts(tmp_path, tokenizer):
    data = Dataset.from_dict({
        "context": ["The lantern of Velmora is green.", "The lantern of Velmora is green.", "The ferry leaves at noon.",
                    "The mill grinds barley."],
        "prompt": ["What colour is the lantern?", "Which town has a green lantern?", "When does the ferry leave?",
                   "What does the mill grind?"],
        "completion": ["Green.", "Velmora.", "At noon.", "Barley."],
    })
    trainer = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, contrast_weight=0.5),
                                       train_dataset=data, processing_class=tokenizer, peft_config=gen_config())
    randomize_generator(trainer.model)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        per_context = trainer.contextualize(batch["context"])
        own = answer_nll(trainer, batch, per_context.rows(batch["context_index"]))
        # partners: the next row with a different context (rows 0 and 1 share one, so both skip to row 2)
        other = answer_nll(trainer, batch, per_context.rows([batch["context_index"][i] for i in (2, 2, 3, 0)]))
    labels = batch["labels"][:, 1:]
    count = (labels != -100).sum(-1)
    answer = (own * count).sum() / count.sum()
    expected = answer + 0.5 * torch.nn.functional.softplus(own - other).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert trainer.objective_metrics["train"]["contrast_gap"][-1] == pytest.approx((other - own).mean().item(), abs=1e-5)

    # one context for the whole batch: no partner, no contrast term
    same = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(same))
        own = answer_nll(trainer, same, trainer.contextualize(same["context"]).rows(same["context_index"]))
    count = (same["labels"][:, 1:] != -100).sum(-1)
    assert loss.item() == pytest.approx(((own * count).sum() / count.sum()).item(), rel=1e-4)

    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "generator_" in n}
    trainer.train()
    assert [n for n, p in trainer.model.named_parameters() if "generator_" in n and not torch.equal(p, before[n])]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all("loss_contrast" in h and math.isfinite(h["contrast_gap"]) for h in logs)
    with pytest.raises(ValueError, match="contrast_weight"):
        train_args(tmp_path, contrast_weight=-1.0)


def test_frozen_generator_parts_stay_fixed_and_the_rest_trains(tmp_path, tokenizer):
    from peft import get_peft_model

    text = Dataset.from_dict({"text": documents(30)})
    model = randomize_generator(get_peft_model(small_base(tokenizer), gen_config()))
    trainer = GenerativeAdapterTrainer(model, args=train_args(tmp_path, max_steps=2, frozen_generator_parts=["A1", "B"]),
                                       train_dataset=text, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "generator_" in n}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        if "generator_" in name:
            frozen = "generator_A1" in name or "generator_B" in name
            assert torch.equal(param, before[name]) == frozen, name
    with pytest.raises(ValueError, match="unknown part"):
        train_args(tmp_path, frozen_generator_parts=["A4"])
    with pytest.raises(ValueError, match="nothing would be trained"):
        train_args(tmp_path, frozen_generator_parts=["norm", "A1", "A2", "A3", "B", "gate", "shared_A", "shared_B",
                                                         "key_conv", "value_conv", "key_lookahead"])
    with pytest.raises(ValueError, match="B is all zeros"):  # a fresh generator: no part would get a gradient
        GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path, frozen_generator_parts=["B"]),
                                 train_dataset=text, processing_class=tokenizer, peft_config=gen_config())
    with pytest.raises(ValueError, match="parts this generator lacks"):  # every part this generator has
        every_part = ["norm", "A1", "A2", "A3", "B"]
        GenerativeAdapterTrainer(model, args=train_args(tmp_path, frozen_generator_parts=every_part),
                                 train_dataset=text, processing_class=tokenizer)


def test_mixed_dataset_errors(tmp_path, tokenizer):
    data = mixed_dataset()
    empty = data.map(lambda row, i: {"text": "" if i == 0 else row["text"]}, with_indices=True)
    with pytest.raises(ValueError, match="Row 0 .* neither"):
        GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path), train_dataset=empty,
                                 processing_class=tokenizer, peft_config=gen_config())
    with pytest.raises(ValueError, match="text_weight"):
        train_args(tmp_path, text_weight=1.5)


def test_resume_from_checkpoint_continues_exactly(tmp_path, tokenizer):
    data = Dataset.from_dict({"text": documents(30, seed=1)})
    full = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path / "a", max_steps=4, save_steps=2),
                                    train_dataset=data, processing_class=tokenizer, peft_config=gen_config())
    full.train()
    from transformers import TrainerCallback

    class StopAfterTwo(TrainerCallback):  # an interruption: the process ends after step 2
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 2

    interrupted = GenerativeAdapterTrainer(small_base(tokenizer),
                                           args=train_args(tmp_path / "b", max_steps=4, save_steps=2),
                                           train_dataset=data, processing_class=tokenizer, peft_config=gen_config(),
                                           callbacks=[StopAfterTwo()])
    interrupted.train()
    resumed = GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path / "b", max_steps=4, save_steps=2),
                                       train_dataset=data, processing_class=tokenizer, peft_config=gen_config())
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-2"))
    a = {n: p for n, p in full.model.named_parameters() if "generator_" in n}
    b = {n: p for n, p in resumed.model.named_parameters() if "generator_" in n}
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-6), n
    saved = json.loads((tmp_path / "b" / "out" / "checkpoint-4" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "GENERATIVE_ADAPTER"


def test_wrong_peft_config_is_refused(tmp_path, tokenizer):
    from peft import LoraConfig

    with pytest.raises(TypeError, match="GenerativeAdapterConfig"):
        GenerativeAdapterTrainer(small_base(tokenizer), args=train_args(tmp_path),
                                 train_dataset=Dataset.from_dict({"text": documents(5)}), processing_class=tokenizer,
                                 peft_config=LoraConfig())
    with pytest.raises(ValueError, match="num_segments"):
        train_args(tmp_path, num_segments=1)


def test_perplexity_reports_adapter_and_both_baselines(tokenizer):
    from peft import get_peft_model

    from peft_generative.perplexity import context_perplexity

    model = get_peft_model(small_base(tokenizer), gen_config())
    result = context_perplexity(model, tokenizer, documents(10, seed=3), num_segments=3, segment_length=16,
                                max_blocks=4, batch_size=2, progress=False)
    assert result["blocks"] == 4
    for objective in ("completion", "reconstruction"):
        values = result[objective]
        assert set(values) == {"adapter", "no_context", "in_prompt", "adapter_other_context"}
        assert all(math.isfinite(v) and v > 1 for v in values.values())
        # a fresh generator is the base model: adapter perplexity equals the no-context one, with any context
        assert values["adapter"] == pytest.approx(values["no_context"], rel=1e-5)
        assert values["adapter_other_context"] == pytest.approx(values["no_context"], rel=1e-5)
        assert values["in_prompt"] != pytest.approx(values["no_context"], rel=1e-3)


def test_perplexity_control_uses_another_blocks_adapter(tokenizer):
    from peft import get_peft_model

    from peft_generative.perplexity import context_perplexity

    model = randomize_generator(get_peft_model(small_base(tokenizer), gen_config()), std=0.5)
    texts = documents(10, seed=3)
    kwargs = dict(num_segments=3, segment_length=16, max_blocks=4, batch_size=3, progress=False)
    result = context_perplexity(model, tokenizer, texts, **kwargs)
    for objective in ("completion", "reconstruction"):
        values = result[objective]
        # the generator is no longer a no-op, and a different context gives a different adapter
        assert values["adapter"] != pytest.approx(values["no_context"], rel=1e-3)
        assert values["adapter_other_context"] != pytest.approx(values["adapter"], rel=1e-4)
    without = context_perplexity(model, tokenizer, texts, **kwargs, control=False)
    assert "adapter_other_context" not in without["reconstruction"]
    assert without["reconstruction"]["adapter"] == pytest.approx(result["reconstruction"]["adapter"], rel=1e-6)
    single = context_perplexity(model, tokenizer, texts, **(kwargs | {"max_blocks": 1}))
    assert "adapter_other_context" not in single["completion"]
    adapters_only = context_perplexity(model, tokenizer, texts, **kwargs, baselines=False)
    for objective in ("completion", "reconstruction"):
        assert set(adapters_only[objective]) == {"adapter", "adapter_other_context"}
        for method in ("adapter", "adapter_other_context"):
            assert adapters_only[objective][method] == pytest.approx(result[objective][method], rel=1e-6)


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, tokenizer):
    """`accelerate launch` with 2 processes (gloo) runs the training script to the end and saves the generator."""
    import os
    import subprocess
    import sys

    model_dir = tmp_path / "tiny"
    small_base(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "train.jsonl"
    # text rows and instruction rows, with the context-specificity loss: two forwards per step under DDP
    rows = [{"text": t, "context": "", "prompt": "", "completion": ""} for t in documents(8)]
    rows += [{"text": "", "context": f"The lantern of house {i} is {c}.", "prompt": f"Colour of lantern {i}?",
              "completion": c} for i, c in enumerate(["green", "red", "blue", "amber"] * 6)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    # --multi_gpu selects accelerate's torchrun-based multi-process launcher; with no GPU (use_cpu) the processes
    # run on the CPU and torch.distributed uses the gloo backend.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "examples/scripts/train_generator.py", "--train_file", str(data), "--model_name_or_path", str(model_dir),
           "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
           "--num_segments", "3", "--segment_length", "16", "--contrast_weight", "0.5", "--key_dim", "16",
           "--value_dim", "16", "--rank", "8",
           "--window", "32", "--report_to", "none", "--save_steps", "2", "--logging_steps", "1",
           "--disable_tqdm", "true", "--use_cpu", "true"]
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    result = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(__file__)), env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size=2" in result.stdout
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert any("contrast_gap" in h for h in state["log_history"]), json.dumps(state["log_history"])
    assert (out / "final" / "adapter_model.safetensors").exists()


def test_only_answered_assistant_turns_are_learned(tokenizer):
    from peft_generative.training.collation import tokenize_conversation

    ids, labels = tokenize_conversation(tokenizer, [
        {"role": "assistant", "content": "Hi there"},  # an opening turn: nothing to answer, not learned
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "How are you?"},
    ])
    learned = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
    assert "How are you?" in learned and "Hi there" not in learned and "Hello" not in learned
    assert len(ids) == len(labels)


def test_context_specificity_script_measures_the_own_vs_other_gap(tokenizer):
    """examples/scripts/context_specificity.py: a fresh generator (B = 0, every adapter zero) has no gap at all;
    one with random read-outs gives different adapters per context, so a nonzero gap."""
    from peft import get_peft_model

    script = load_example_script("context_specificity")
    rows = [{"context": f"The lantern of house {i} is {c}.",
             "messages": [{"role": "user", "content": f"Colour of lantern {i}?"}, {"role": "assistant", "content": c}]}
            for i, c in enumerate(["green", "red", "blue", "amber"])]
    model = get_peft_model(small_base(tokenizer), gen_config())
    fresh = script.specificity(model, tokenizer, rows, batch_size=4)
    assert fresh["rows"] == 4 and math.isfinite(fresh["nll_own"]) and fresh["gap"] == 0.0
    randomize_generator(model)
    trained = script.specificity(model, tokenizer, rows, batch_size=4)
    assert trained["gap"] != 0.0 and trained["nll_own"] != fresh["nll_own"]


def test_distillation_from_the_in_context_teacher(tmp_path, tokenizer):
    from peft import get_peft_model

    data = Dataset.from_dict({
        "context": ["The lantern of Velmora is green.", "The ferry leaves at noon."] * 2,
        "prompt": ["What colour is the lantern?", "When does the ferry leave?"] * 2,
        "completion": ["Green.", "At noon."] * 2,
    })
    model = randomize_generator(get_peft_model(small_base(tokenizer), gen_config()))
    trainer = GenerativeAdapterTrainer(model, args=train_args(tmp_path, max_steps=1, distill_weight=1.0,
                                                              distill_top_k=8, per_device_train_batch_size=4),
                                       train_dataset=data, processing_class=tokenizer)
    row = trainer.train_dataset[0]
    teacher_text = tokenizer.decode(row["teacher_input_ids"])
    assert "Velmora" in teacher_text and "Velmora" not in tokenizer.decode(row["input_ids"])
    answer = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert [t for t in row["teacher_labels"] if t != -100] == answer  # the same answer tokens for both

    # the logged loss is the KL from the teacher's renormalised top-k to the student, checked against full forward
    # passes on the same (whole-dataset) batch before the first update
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(data))])
    generated = trainer.contextualize(batch["context"]).rows(batch["context_index"])
    with torch.no_grad(), trainer.tuner.use_context(generated):
        student = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad(), trainer.tuner.use_context(None):
        teacher = trainer.model(input_ids=batch["teacher_input_ids"],
                                attention_mask=batch["teacher_attention_mask"]).logits
    s_logp = torch.log_softmax(student[:, :-1][batch["labels"][:, 1:] != -100].float(), -1)
    t_logp = torch.log_softmax(teacher[:, :-1][batch["teacher_labels"][:, 1:] != -100].float(), -1)
    top, tokens = t_logp.topk(8, dim=-1)
    p = torch.softmax(top, -1)
    kl = (p * (p.log() - s_logp.gather(-1, tokens))).sum(-1)
    expected = kl.mean().item()
    # distilling only where the teacher's top-1 is the gold answer token (a random teacher is never right: nothing
    # is kept and the term is zero; `test_topk_kl_keeps_the_tokens_the_teacher_ranks_first` checks the selection)
    right = tokens[:, 0] == batch["teacher_labels"][:, 1:][batch["teacher_labels"][:, 1:] != -100]
    trainer.args.distill_where_teacher_right = True
    with torch.no_grad():
        trainer.compute_loss(trainer.model, dict(batch))
    trainer.args.distill_where_teacher_right = False
    metrics = trainer.objective_metrics["train"]
    assert metrics["distill_kept"] == [pytest.approx(right.float().mean().item())]
    assert metrics["loss_distill"] == [pytest.approx(kl[right].mean().item() if right.any() else 0.0, abs=1e-6)]
    metrics.clear()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert expected > 0 and logs[0]["loss_distill"] == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="distill_weight"):
        train_args(tmp_path, distill_weight=-1.0)


def test_distillation_in_a_mixed_batch_uses_the_instruction_rows_adapters(tmp_path, tokenizer):
    # a batch of text blocks (two target rows each) and instruction rows: the student's answers are scored with the
    # instruction rows' own adapters (this used to fail: "the active context has 7 row(s) but the batch has 5")
    trainer, batch = mixed_batch_trainer(tmp_path, tokenizer, distill_weight=1.0)
    assert batch["objective"].tolist() == [0, 1, 2, 2] and batch["teacher_rows"].tolist() == [2, 3]
    with torch.no_grad():
        mixed = trainer.compute_loss(trainer.model, dict(batch))
        trainer.args.distill_weight = 0.0
        plain = trainer.compute_loss(trainer.model, dict(batch))
    distill = trainer.objective_metrics["train"]["loss_distill"]
    assert len(distill) == 1 and distill[0] > 0
    assert mixed.item() == pytest.approx(plain.item() + distill[0], rel=1e-5)


def test_shared_lora_trains_beside_the_generator_and_the_context_norm_penalty_is_logged(tmp_path, tokenizer):
    # the style/content split: a generator with a shared (context-independent) LoRA, trained with a penalty on the
    # size of the part written from each context
    config = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=32,
                                        shared_rank=4)
    trainer, batch = mixed_batch_trainer(tmp_path, tokenizer, config, context_norm_weight=0.5)
    with torch.no_grad():
        penalised = trainer.compute_loss(trainer.model, dict(batch))
        trainer.args.context_norm_weight = 0.0
        plain = trainer.compute_loss(trainer.model, dict(batch))
        size = trainer.contextualize(batch["context"]).context_delta_sq_norm().mean().item()
    logged = trainer.objective_metrics["train"]["context_norm"]
    assert logged == [pytest.approx(size, rel=1e-5)] and size > 0
    assert penalised.item() == pytest.approx(plain.item() + 0.5 * size, rel=1e-5)
    trainer.args.context_norm_weight = 0.5
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "generator_shared" in n}
    trainer.train()
    assert before and all(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if n in before)
    with pytest.raises(ValueError, match="context_norm_weight"):
        train_args(tmp_path, context_norm_weight=-1.0)


def test_topk_kl_keeps_the_tokens_the_teacher_ranks_first():
    from peft_generative.training.distillation import topk_kl

    teacher = torch.log_softmax(torch.tensor([[4.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.0], [2.0, 2.5, 0.0, 0.0]]), -1)
    student = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 3.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]), -1)
    kl, kept = topk_kl(teacher, student, top_k=2)
    assert kept.all()
    for i in range(3):  # by hand: the teacher's two most likely tokens, renormalised
        top = teacher[i].topk(2)
        p = torch.softmax(top.values, -1)
        assert kl[i].item() == pytest.approx((p * (p.log() - student[i][top.indices])).sum().item(), rel=1e-6)
    assert kl[1].item() > 0  # top-2 renormalisation: not zero even where the full distributions agree
    _, kept = topk_kl(teacher, student, top_k=2, answer=torch.tensor([0, 2, 1]))
    assert kept.tolist() == [True, False, True]
