"""The long run's driver (examples/scripts/long_run.py) and the cheaper training step of fact_capability."""

import json

import pytest
import torch

from .conftest import load_example_script

CONFIG = """
out: {out}
init: shipped
common: [--bf16, --pack-questions]
threads: 1
stages:
  - name: a
    cpu_budget: 10
    flags: [--data, needles]
  - name: b
    cpu_budget: null
    eval_every_cpu_s: 100
    flags: [--data, words]
stage_eval_sets: words_one
curve_log: {out}/curve.jsonl
plot: {out}/curve.png
"""


def config(tmp_path, text=CONFIG):
    path = tmp_path / "long.yaml"
    path.write_text(text.format(out=tmp_path))
    return load_example_script("long_run").load_config(str(path))


def test_stages_chain_their_generators_and_share_the_common_flags(tmp_path):
    script = load_example_script("long_run")
    cfg = config(tmp_path)
    first, second = script.stage_argv(cfg, 0, 10), script.stage_argv(cfg, 1, 200)
    assert first[first.index("--init") + 1] == "shipped"
    assert second[second.index("--init") + 1] == str(tmp_path / "a" / "generator")
    assert "--bf16" in first and "--pack-questions" in second
    assert first[first.index("--eval-sets") + 1] == "words_one"  # a short stage is judged on its few sets
    assert "--eval-sets" not in second  # the long stage on all of them (or on `long_eval_sets`)
    assert second[second.index("--cpu-budget") + 1] == "200"
    fc = load_example_script("fact_capability")
    assert fc.parse(second).pack_questions and fc.parse(second).data == "words"  # flags fact_capability accepts


def test_the_demo_is_an_evaluation_set_of_its_own():
    fc = load_example_script("fact_capability")
    demo, control = fc.eval_sets(30, 0, ("demo",))["demo"]
    assert "Quillmoor" in demo["context"] and len(demo["questions"]) == 6
    # the control is another context's adapter (the next document's): a document of its own, asked nothing
    assert control["questions"] == [] and "Quillmoor" not in control["context"] and control["context"].strip()
    assert fc.parse(["--name", "x", "--eval-sets", "words,demo,prose_recall"]).eval_sets == ("words", "demo",
                                                                                           "prose_recall")


def test_flags_from_change_the_open_ended_stage_from_a_segment_on(tmp_path):
    script = load_example_script("long_run")
    stage_b = "    flags: [--data, words]\n"
    cfg = config(tmp_path, CONFIG.replace(stage_b, stage_b + "    flags_from:\n      400: [--prose-share, \"0.25\"]\n"))
    assert "--prose-share" not in script.stage_argv(cfg, 1, 400)  # the segment that ends where the change starts
    later = script.stage_argv(cfg, 1, 600)
    assert later[later.index("--prose-share") + 1] == "0.25"
    with pytest.raises(SystemExit, match="a multiple of eval_every_cpu_s"):
        config(tmp_path, CONFIG.replace(stage_b, stage_b + "    flags_from:\n      250: [--prose-share, \"0.25\"]\n"))


def test_only_the_last_stage_may_be_open_ended(tmp_path):
    text = CONFIG.replace("cpu_budget: 10", "cpu_budget: null")
    with pytest.raises(SystemExit, match="only the last stage"):
        config(tmp_path, text)


def test_segments_resume_and_their_generators_are_evaluated_beside_the_training(tmp_path):
    script = load_example_script("long_run")
    cfg = config(tmp_path)
    run = tmp_path / "b"
    assert script.next_budget(run, 100) == 100  # nothing trained yet
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"step": 9, "cpu": 130.0}))
    assert script.next_budget(run, 100) == 200
    evaluations = script.SegmentEvaluations(cfg, 1)
    (run / "generator").mkdir()
    (run / "generator" / "training_state.json").write_text(json.dumps({"step": 8, "cpu": 101.5, "tokens": 700}))
    evaluations.snapshot(100)
    assert evaluations.snapshots() == [100] and (run / "gen_100" / "training_state.json").exists()
    argv = evaluations.argv(100)
    assert argv[argv.index("--init") + 1] == str(run / "gen_100") and "--eval-only" in argv
    fc = load_example_script("fact_capability")
    assert fc.parse(argv).eval_only
    with pytest.raises(SystemExit):
        fc.parse(["--name", "x", "--eval-only"])  # nothing to evaluate but the shipped generator: refused
    # an evaluation that finished (here: written by hand) becomes a row of the curve, once
    evaluations.result_path(100).parent.mkdir(parents=True)
    evaluations.result_path(100).write_text(json.dumps(result(25.0, 700, 8)))
    evaluations.step()
    assert evaluations.running is None and (run / "result_100.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("b", 8)] and (tmp_path / "curve.png").exists()


def result(contains, tokens, steps):
    def part(own):
        return {"own": {"contains": own, "by_kind": {"contains": {"name": own / 2, "word": own}}},
                "control": {"contains": 1.0}, "nll_gap": 0.5}
    return {"steps": steps, "train_cpu_s": 100 * steps, "train_tokens": tokens, "words": part(contains),
            "words_one": part(contains + 10),
            "baselines_words": {"prompting": {"contains": 60.0, "by_kind": {"contains": {"name": 50.0, "word": 70.0}}}}}


def test_curve_rows_count_earlier_stages_tokens_and_replace_a_repeated_evaluation(tmp_path):
    script = load_example_script("long_run")
    cfg = config(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "state.json").write_text(json.dumps({"step": 5, "cpu": 10.0, "tokens": 1000}))
    log = tmp_path / "curve.jsonl"
    row = script.curve_row(cfg, 1, result(20.0, 500, 3))
    assert row["tokens"] == 1500 and row["sets"]["words"]["prompting_by_kind"] == {"name": 50.0, "word": 70.0}
    script.append_row(log, row)
    script.append_row(log, script.curve_row(cfg, 1, result(30.0, 900, 6)))
    measured = {**result(31.0, 900, 6), "perplexity": {
        "reconstruction": {"adapter": 30.123, "adapter_other_context": 36.0, "no_context": 39.4, "in_prompt": 1.8},
        "completion": {"adapter": 45.0, "adapter_other_context": 47.5, "no_context": 51.4, "in_prompt": 27.0},
        "blocks": 12}}  # as context_perplexity returns it
    script.append_row(log, script.curve_row(cfg, 1, measured))  # evaluated again, with held-out perplexity
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and rows[-1]["sets"]["words"]["own"] == 31.0
    assert rows[-1]["perplexity"]["reconstruction"] == {"own": 30.12, "control": 36.0, "no_context": 39.4}
    assert set(rows[-1]["perplexity"]) == {"reconstruction", "completion"}
    assert "perplexity" not in rows[0]
    script.plot(log, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_bf16_step_keeps_an_fp32_generator_and_learns_the_same_loss():
    """`--bf16`: the frozen base in bf16, the generator in fp32; the loss of the same documents stays within a few
    percent of fp32's, packed or not."""
    fc = load_example_script("fact_capability")
    flags = ["--name", "x", "--data", "words", "--word-entities", "1-2", "--key-conv", "2", "--value-lookahead", "1"]
    args32 = fc.parse(flags)
    model, tok = fc.build(args32)
    docs = [fc.train_document(i, args32) for i in range(2)]
    with torch.no_grad():
        reference = fc.training_loss(model, tok, docs, args32).item()
        packed = fc.training_loss(model, tok, docs, fc.parse(flags + ["--pack-questions"])).item()
    assert packed == pytest.approx(reference, rel=1e-4)
    args16 = fc.parse(flags + ["--bf16", "--pack-questions", "--attention", "eager"])
    model16, _ = fc.build(args16)
    dtypes = {("generator_" in n, p.dtype) for n, p in model16.named_parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    with torch.no_grad():
        cheap = fc.training_loss(model16, tok, docs, args16).item()
    assert cheap == pytest.approx(reference, rel=0.03)
    assert fc.data_tokens(tok, docs, args32) > sum(len(d["questions"]) for d in docs) * 20


def test_a_segment_trains_without_evaluating_and_its_generator_is_evaluated_alone(tmp_path, monkeypatch):
    """`--no-final-eval` saves the generator with its training state and stops; `--eval-only` evaluates that
    directory as it is (here on the demo: six questions and a control document) and reports the steps it was
    trained for."""
    fc = load_example_script("fact_capability")
    common = ["--out", str(tmp_path), "--bf16", "--attention", "eager", "--pack-questions", "--data", "words",
              "--docs-per-step", "2", "--key-conv", "2", "--value-lookahead", "1", "--probe-every", "0",
              "--eval-sets", "demo"]
    fc.main(["--name", "train", "--max-steps", "1", "--no-final-eval", *common])
    generator = tmp_path / "train" / "generator"
    progress = json.loads((generator / "training_state.json").read_text())
    assert progress["step"] == 1 and progress["tokens"] > 100
    assert not (tmp_path / "train" / "result.json").exists()
    validation = tmp_path / "validation.jsonl"  # held-out text for two perplexity blocks of 384 tokens
    sentences = [f"The ferry left pier {i} at dawn, and the harbour master wrote its cargo in the ledger." for i in
                 range(80)]
    validation.write_text(json.dumps({"text": " ".join(sentences)}) + "\n")
    monkeypatch.setattr(fc, "PRETRAINING_VALIDATION", validation)
    fc.main(["--name", "evaluated", "--init", str(generator), "--eval-only", "--perplexity-blocks", "2", *common])
    result = json.loads((tmp_path / "evaluated" / "result.json").read_text())
    assert result["steps"] == 1 and result["train_tokens"] == progress["tokens"]
    assert len(result["demo"]["own"]["predictions"]) == 6
    reconstruction = result["perplexity"]["reconstruction"]
    assert set(reconstruction) == {"adapter", "adapter_other_context", "no_context", "in_prompt"}
    assert reconstruction["in_prompt"] < reconstruction["no_context"]  # the text in the prompt: nearly copied
    assert not (tmp_path / "evaluated" / "checkpoint.safetensors").exists()  # evaluating trains nothing


def test_the_shipped_long_run_config_gives_fact_capability_valid_stages(tmp_path, monkeypatch):
    from pathlib import Path

    script = load_example_script("long_run")
    fc = load_example_script("fact_capability")
    for name in ("PROSE_TRAIN", "TEXT_TRAIN"):  # the real text the later segments read (data/ is built offline)
        (tmp_path / name).write_text("{}\n")
        monkeypatch.setattr(fc, name, tmp_path / name)
    path = Path(__file__).resolve().parent.parent / "examples" / "configs" / "curricula" / "long_run_smollm2.yaml"
    cfg = script.load_config(str(path))
    for index, _ in enumerate(cfg["stages"]):
        args = fc.parse(script.stage_argv(cfg, index, 100))
        assert args.bf16 and args.pack_questions and args.attention == "eager"
    final = cfg["stages"][-1]
    assert final["cpu_budget"] is None
    first, later = (fc.parse(script.stage_argv(cfg, len(cfg["stages"]) - 1, b)) for b in (7200, 14400))
    assert (first.prose_share, first.text_share) == (0.0, 0.0) and later.prose_share > 0 and later.text_share > 0
    evaluations = script.SegmentEvaluations(cfg, len(cfg["stages"]) - 1)
    monkeypatch.setattr(fc, "PRETRAINING_VALIDATION", tmp_path / "TEXT_TRAIN")
    evaluation = fc.parse(evaluations.argv(7200))
    assert set(evaluation.eval_sets) >= {"words", "multi_needle", "prose_recall", "demo"}
    assert evaluation.perplexity_blocks == 12


def test_two_processes_share_a_step_and_give_the_one_process_update(tmp_path):
    """torchrun with 2 processes (gloo, one thread each), each taking half of the step's documents: after one step
    the saved Adam moments (the step's gradient, scaled) match one process's within float summation order."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    script = Path(__file__).resolve().parent.parent / "examples" / "scripts" / "fact_capability.py"
    common = ["--out", str(tmp_path), "--data", "words", "--docs-per-step", "4", "--key-conv", "2",
              "--value-lookahead", "1", "--probe-every", "0", "--max-steps", "1", "--no-final-eval",
              "--pack-questions"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), "--name", "one", *common], check=True, env=env,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script), "--name", "two", *common], check=True, env=env, capture_output=True)
    one = load_file(str(tmp_path / "one" / "checkpoint.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoint.safetensors"))
    moments = [k for k in one if k.endswith("/exp_avg")]
    assert moments and one.keys() == two.keys()
    for key in moments:  # relative to the tensor's size: single elements near zero differ more
        assert (one[key] - two[key]).norm() <= 1e-3 * one[key].norm(), key
    states = [json.loads((tmp_path / name / "state.json").read_text()) for name in ("one", "two")]
    assert states[0]["tokens"] == states[1]["tokens"] and states[1]["step"] == 1
