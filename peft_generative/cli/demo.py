"""`peft-generative demo`: contextualize the bundled document (or yours) and compare three ways to answer."""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

from .common import (UNTRAINED, add_model_args, add_refine_arg, check_model_args, load_model, progress_enabled,
                     read_text)


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("demo", help="contextualize a bundled document and answer questions about it",
                            description="Contextualize a document and answer questions three ways: base model, "
                                        "generative adapter, context in the prompt.")
    add_model_args(parser)
    parser.add_argument("--document", help="use this UTF-8 text file instead of the bundled document")
    parser.add_argument("--question", action="append", help="ask this question (repeatable)")
    add_refine_arg(parser)
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    check_model_args(args)
    assets = resources.files("peft_generative") / "assets"
    document = read_text(args.document, "--document") if args.document else \
        (assets / "quillmoor.txt").read_text(encoding="utf-8")
    questions = json.loads((assets / "quillmoor_questions.json").read_text(encoding="utf-8"))
    if args.question:
        questions = [{"question": q, "answers": []} for q in args.question]

    from ..answering import generate_answer
    from ..lm_costs import format_bytes, kv_cache_numel

    model, tokenizer, info = load_model(args)
    n_tokens = len(tokenizer(document, add_special_tokens=False)["input_ids"])
    start = time.perf_counter()
    ctx = model.contextualize(document, progress=progress_enabled(), refine_steps=args.refine_steps)
    ctx_seconds = time.perf_counter() - start
    bytes_per = next(model.parameters()).element_size()
    adapter_bytes = ctx.adapter_numel * bytes_per
    kv_bytes = kv_cache_numel(model.config, n_tokens) * bytes_per
    print(f"generator: {info['generator'] or 'fresh (untrained)'}")
    print(f"context: {n_tokens} tokens, contextualized in {ctx_seconds:.2f} s")
    print(f"adapter: {ctx.adapter_numel:,} floats ({format_bytes(adapter_bytes)}) vs KV cache of the context "
          f"{kv_cache_numel(model.config, n_tokens):,} floats ({format_bytes(kv_bytes)}): "
          f"{kv_bytes / adapter_bytes:.1f}x smaller\n")
    for item in questions:
        q = item["question"]
        timings, answers = {}, {}
        for label, context in (("base model (no context)", None), ("generative adapter", ctx)):
            start = time.perf_counter()
            with model.use_context(context):
                answers[label] = generate_answer(model, tokenizer, q, max_new_tokens=args.max_new_tokens)
            timings[label] = time.perf_counter() - start
        start = time.perf_counter()
        with model.use_context(None):
            answers["context in prompt"] = generate_answer(model, tokenizer, q, context_text=document,
                                                           max_new_tokens=args.max_new_tokens)
        timings["context in prompt"] = time.perf_counter() - start
        print(f"Q: {q}" + (f"   (gold: {item['answers'][0]})" if item["answers"] else ""))
        for label, answer in answers.items():
            print(f"  {label:<24} [{timings[label]:5.2f} s] {answer}")
        print()
    if not info["trained"]:
        print(UNTRAINED)
    return 0
