"""The benchmark runs end to end and measures what it says; speed itself is reported, never asserted."""

import json
import math

import pytest
import torch

from peft_generative.benchmark import FIGURES, run_benchmarks
from peft_generative.benchmark.timing import SavedForBackward
from peft_generative.cli import build_parser

from .conftest import small_base


@pytest.fixture
def tiny_dir(tmp_path, tokenizer):
    path = tmp_path / "tiny"
    small_base(tokenizer, max_positions=1024).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_every_figure_is_measured_and_reported(tiny_dir, tmp_path):
    out = tmp_path / "bench"
    results = run_benchmarks(str(tiny_dir), context_lengths=[64, 5000], repeats=1, new_tokens=3, batch=3,
                             out=str(out), progress=False)
    figures = results["figures"]
    # 5000 tokens do not fit in 1024 positions with the question and answer: measured at the longest that fits
    answers = sorted(f["context_tokens"] for k, f in figures.items() if k.startswith("answer_"))
    question_tokens = 1024 - 3 - answers[1]
    assert answers[0] == 64 and 0 < question_tokens <= 64
    assert set(figures) == {"contextualize", "answer_64", f"answer_{answers[1]}", "decode", "batched", "train_step"}
    for figure in figures.values():
        for key, value in figure.items():
            if key.endswith("_s") or key in ("ratio", "speedup"):
                assert math.isfinite(value) and value > 0, (key, value)
    long = figures[f"answer_{answers[1]}"]
    assert long["kv_cache_bytes"] == 2 * 2 * 2 * 8 * answers[1] * 4  # layers * (k, v) * kv heads * head_dim * fp32
    assert long["adapter_bytes"] > 0 and long["state_bytes_ratio"] == long["kv_cache_bytes"] / long["adapter_bytes"]
    train = figures["train_step"]
    assert train["activation_mib"]["generator"] > 0 and train["activation_mib"]["lora"] > 0
    assert train["peak_device_mib"] == {"generator": None, "lora": None}  # CPU: no allocator statistics
    assert train["generator_tokens_per_s"] == pytest.approx(4 * (256 + 128) / train["generator_step_s"])
    assert train["lora_tokens_per_s"] == pytest.approx(4 * (256 + 128) / train["lora_step_s"])
    # without a 2K or 8K length those two targets are not claimed
    assert set(results["summary"]) == {"contextualize_vs_forward", "decode_overhead", "batched_contexts",
                                       "train_step_vs_lora"}
    saved = json.loads((out / "bench.json").read_text())
    assert saved["summary"].keys() == results["summary"].keys() and saved["machine"]["device"] == "cpu"
    table = (out / "bench.md").read_text()
    assert "| figure | ratio | target | met |" in table and f"| {answers[1]} |" in table
    assert figures["batched"]["batch"] == 3 and "the bare base model batches the same prompts" in table
    assert f"({train['generator_tokens_per_s']:.0f} vs {train['lora_tokens_per_s']:.0f} tokens/s)" in table


def test_bfloat16_runs_end_to_end(tiny_dir, tmp_path):
    """`--dtype bfloat16` on the CPU: the proxy here for `--device cuda --dtype bfloat16` (scripts/device_check.sh)."""
    results = run_benchmarks(str(tiny_dir), context_lengths=[64], repeats=1, new_tokens=3, batch=2, device="cpu",
                             dtype="bfloat16", figures=["contextualize", "answer", "decode", "batched"],
                             out=str(tmp_path / "bench"), progress=False)
    assert results["dtype"] == "bfloat16" and set(results["figures"]) == {"contextualize", "answer_64", "decode",
                                                                           "batched"}
    answer = results["figures"]["answer_64"]
    assert answer["kv_cache_bytes"] == 2 * 2 * 2 * 8 * 64 * 2  # the KV cache counted in bf16 bytes
    assert all(math.isfinite(v) and v > 0 for f in results["figures"].values() for k, v in f.items()
               if k.endswith("_s"))


def test_benchmark_leaves_the_models_as_they_were(tiny_dir, tokenizer):
    from peft_generative.benchmark import figures as F
    from peft_generative.default_model import load_base_model
    from peft_generative.loading import load_generative_model

    peft_model, tok, _ = load_generative_model(str(tiny_dir))
    base, _ = load_base_model(str(tiny_dir))
    setup = F.Setup(peft_model, base, tok, torch.device("cpu"), repeats=1, new_tokens=3)
    ids = setup.question()
    before = base(input_ids=ids).logits
    F.train_step_vs_lora(setup, rows=2, context_tokens=16, target_tokens=8)
    assert not any(p.requires_grad for p in peft_model.parameters()) and not peft_model.training
    assert type(base).__name__ == "LlamaForCausalLM" and torch.equal(base(input_ids=ids).logits, before)


def test_prompting_reference_with_a_cached_context_gives_the_same_answer(tiny_dir):
    from peft_generative.benchmark import figures as F
    from peft_generative.default_model import load_base_model
    from peft_generative.loading import load_generative_model

    peft_model, tok, _ = load_generative_model(str(tiny_dir))
    base, _ = load_base_model(str(tiny_dir))
    setup = F.Setup(peft_model, base, tok, torch.device("cpu"), repeats=1, new_tokens=6)
    full = torch.cat([torch.tensor([setup.context_ids(50)]), setup.question()], dim=1)
    with torch.no_grad():
        cache = base(input_ids=full[:, :50], use_cache=True).past_key_values
    assert torch.equal(setup.generate(base, full), setup.generate(base, full, past_key_values=cache))


def test_saved_for_backward_counts_activations_not_parameters():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    meter = SavedForBackward(layer)
    with meter.measuring():
        layer(x).sum()
    assert meter.bytes == x.numel() * x.element_size()  # the input is kept, the weight is a parameter


def test_bad_settings_and_command_line(tiny_dir):
    with pytest.raises(ValueError, match="unknown figure"):
        run_benchmarks(str(tiny_dir), figures=["speed"])
    with pytest.raises(ValueError, match="positive"):
        run_benchmarks(str(tiny_dir), repeats=0)
    args = build_parser().parse_args(["bench", "--figures", "decode", "batched", "--lengths", "128", "--repeats", "2"])
    assert args.figures == ["decode", "batched"] and args.lengths == [128] and args.repeats == 2
    assert set(FIGURES) == {"contextualize", "answer", "decode", "batched", "train_step"}
