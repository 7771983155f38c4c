"""`run_benchmarks`: speed and memory of Generative Adapter against prompting and plain LoRA, as ratios to
references measured in the same run (medians after a warm-up). Runs on CPU or GPU; no timing is asserted anywhere,
the numbers are reported. The command line `peft-generative bench` is in `peft_generative.cli.bench`."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..progress import progress_bar
from . import figures as F
from .tables import benchmark_markdown, summarize_figures
from .timing import machine_info

FIGURES = ("contextualize", "answer", "decode", "batched", "train_step")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def run_benchmarks(model: Optional[str] = None, generator: Optional[str] = None, *,
                   context_lengths: Sequence[int] = (512, 2048, 8192), repeats: int = 3, new_tokens: int = 32,
                   batch: int = 8, device: Optional[str] = None, dtype: str = "float32",
                   figures: Sequence[str] = FIGURES, out: Optional[str] = None, command: Optional[str] = None,
                   progress: bool = True) -> dict:
    """Measure the figures (see `FIGURES`) and return (and with `out`, write `bench.json` and `bench.md` into that
    directory) the results with a summary of ratios against their targets. Context lengths longer than the base
    model's positions allow (question and answer included) are shortened to fit and reported as measured."""
    from ..default_model import load_base_model
    from ..loading import load_generative_model

    unknown = set(figures) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figure(s) {sorted(unknown)}; choose from {list(FIGURES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if repeats < 1 or new_tokens < 1 or batch < 1 or not context_lengths or min(context_lengths) < 1:
        raise ValueError("repeats, new_tokens, batch and every context length must be positive")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    peft_model, tokenizer, info = load_generative_model(model, generator, dtype=DTYPES[dtype], device=dev)
    base, _ = load_base_model(model, dtype=DTYPES[dtype], device=dev)
    setup = F.Setup(peft_model, base, tokenizer, dev, repeats, new_tokens)

    steps = [(name, length) for name in figures for length in (context_lengths if name == "answer" else [None])]
    measured: dict = {}
    for name, length in progress_bar(steps, desc="benchmark", enabled=progress):
        if name == "contextualize":
            measured["contextualize"] = F.contextualize_vs_forward(setup)
        elif name == "answer":
            figure = F.answer_vs_prompting(setup, length)
            measured[f"answer_{figure['context_tokens']}"] = figure
        elif name == "decode":
            measured["decode"] = F.decode_overhead(setup)
        elif name == "batched":
            measured["batched"] = F.batched_contexts(setup, batch=batch)
        else:
            measured["train_step"] = F.train_step_vs_lora(setup)
    results = {"date": datetime.date.today().isoformat(), "command": command or "run_benchmarks(...)",
               "machine": machine_info(dev), "model": model or "SmolLM2-135M-Instruct (default)",
               "generator": info["generator"], "generator_trained": info["trained"], "dtype": dtype,
               "repeats": repeats, "new_tokens": new_tokens, "figures": measured, "summary": summarize_figures(measured)}
    if out:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (directory / "bench.md").write_text(benchmark_markdown(results), encoding="utf-8")
    return results


__all__ = ["DTYPES", "FIGURES", "run_benchmarks"]
