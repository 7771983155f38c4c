"""`peft-generative`: contextualize documents, chat with memory, export adapters, train.

Every command runs offline on the embedded default model unless `--model` names another causal LM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Optional

UNTRAINED = ("NOTE: no trained generator is available for this model, so a fresh (untrained) generator is "
             "used; its adapters are exactly zero and answers equal the base model's.")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="base causal LM (path or Hub id); default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--generator", default=None,
                        help="generator directory or Hub id; default: the one shipped for the default model")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="answer length limit (default 48)")


def _load(args):
    from .loading import load_generative_model

    model, tokenizer, info = load_generative_model(args.model, args.generator)
    if not info["trained"]:
        print(UNTRAINED, file=sys.stderr)
    return model, tokenizer, info


def _read_text(path: str) -> str:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    if not text.strip():
        raise SystemExit(f"error: the context in {path!r} is empty")
    return text


# ---- demo (the main job) ---------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .answering import generate_answer
    from .lm_costs import format_bytes, kv_cache_numel

    document = _read_text(args.document) if args.document else \
        (resources.files("peft_generative") / "assets" / "quillmoor.txt").read_text(encoding="utf-8")
    questions = json.loads((resources.files("peft_generative") / "assets" / "quillmoor_questions.json")
                           .read_text(encoding="utf-8"))
    if args.question:
        questions = [{"question": q, "answers": []} for q in args.question]
    model, tokenizer, info = _load(args)
    n_tokens = len(tokenizer(document, add_special_tokens=False)["input_ids"])
    start = time.perf_counter()
    ctx = model.contextualize(document)
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
        timings = {}
        answers = {}
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


# ---- ask --------------------------------------------------------------------------------------------------------
def cmd_ask(args) -> int:
    from .answering import generate_answer

    model, tokenizer, _ = _load(args)
    text = _read_text(args.context)
    start = time.perf_counter()
    ctx = model.contextualize(text)
    print(f"[contextualized {ctx.num_tokens[0]} tokens in {time.perf_counter() - start:.2f} s]", file=sys.stderr)
    if args.save_lora:
        ctx.save_pretrained(args.save_lora)
        print(f"[adapter saved as a LoRA in {args.save_lora}]", file=sys.stderr)
    for q in args.question or []:
        print(generate_answer(model, tokenizer, q, max_new_tokens=args.max_new_tokens))
    if args.interactive or not args.question:
        while True:
            try:
                q = input("question> ").strip()
            except EOFError:
                break
            if q in ("", "exit", "quit"):
                break
            print(generate_answer(model, tokenizer, q, max_new_tokens=args.max_new_tokens))
    return 0


# ---- chat with per-user memory ------------------------------------------------------------------------------------
def cmd_chat(args) -> int:
    from .answering import generate_answer

    model, tokenizer, _ = _load(args)
    memory_dir = Path(args.memory_dir)
    memory_dir.mkdir(parents=True, exist_ok=True)
    path = memory_dir / f"{args.user}.safetensors"
    memory = model.load_context(path) if path.exists() else None
    print(f"[{args.user}: " + (f"memory of {memory.num_tokens[0]} tokens loaded]" if memory else "new user]"),
          file=sys.stderr)
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            break
        if message in ("", "exit", "quit"):
            break
        with model.use_context(memory):
            reply = generate_answer(model, tokenizer, message, max_new_tokens=args.max_new_tokens)
        print(f"assistant> {reply}")
        exchange = f"User: {message}\nAssistant: {reply}\n"
        memory = model.contextualize(exchange, extend=memory, activate=False, progress=False)
        memory.save_state(str(path))  # atomic: a crash never leaves a half-written memory
    if memory is not None:
        print(f"[memory saved: {path} ({memory.num_tokens[0]} tokens)]", file=sys.stderr)
    return 0


# ---- export -------------------------------------------------------------------------------------------------------
def cmd_export(args) -> int:
    model, _, _ = _load(args)
    if args.state:
        ctx = model.load_context(args.state)
    else:
        ctx = model.contextualize(_read_text(args.context))
    ctx.save_pretrained(args.out)
    print(f"LoRA adapter (rank {ctx.config.adapter_rank}, {ctx.adapter_numel:,} floats) written to {args.out}")
    return 0


# ---- interpolate --------------------------------------------------------------------------------------------------
def cmd_interpolate(args) -> int:
    from .training.interpolation import interpolate_generators

    weights = interpolate_generators(args.first, args.second, args.weight, args.out)
    print(f"{args.weight} x {args.first} + {1 - args.weight:g} x {args.second} "
          f"({sum(t.numel() for t in weights.values()):,} parameters) written to {args.out}")
    return 0


# ---- train --------------------------------------------------------------------------------------------------------
def cmd_train(argv: list[str]) -> int:
    from .training.script import main, make_parser

    script_args, training_args = make_parser().parse_args_and_config(argv)
    main(script_args, training_args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peft-generative", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="contextualize a bundled document and answer questions about it")
    _add_model_args(demo)
    demo.add_argument("--document", help="use this text file instead of the bundled document")
    demo.add_argument("--question", action="append", help="ask this question (repeatable)")
    demo.set_defaults(func=cmd_demo)

    ask = sub.add_parser("ask", help="contextualize a file (or - for stdin) and answer questions")
    _add_model_args(ask)
    ask.add_argument("--context", required=True, help="text file, or - for stdin")
    ask.add_argument("--question", "-q", action="append", help="question (repeatable); none = interactive")
    ask.add_argument("--interactive", "-i", action="store_true", help="keep asking after the given questions")
    ask.add_argument("--save-lora", help="also save the generated adapter as a plain LoRA directory")
    ask.set_defaults(func=cmd_ask)

    chat = sub.add_parser("chat", help="chat; each finished exchange streams into a per-user memory")
    _add_model_args(chat)
    chat.add_argument("--user", required=True, help="user id (names the memory file)")
    chat.add_argument("--memory-dir", default="memories", help="where memories are saved (default ./memories)")
    chat.set_defaults(func=cmd_chat)

    export = sub.add_parser("export", help="export a context as a plain PEFT LoRA directory")
    _add_model_args(export)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", help="text file, or - for stdin")
    source.add_argument("--state", help="a saved context state (.safetensors), e.g. a chat memory")
    export.add_argument("--out", required=True, help="output directory")
    export.set_defaults(func=cmd_export)

    interpolate = sub.add_parser("interpolate", help="weight-interpolate two generators for the same base model")
    interpolate.add_argument("first", help="generator directory (e.g. the fine-tuned one)")
    interpolate.add_argument("second", help="generator directory (e.g. the one it started from)")
    interpolate.add_argument("--weight", type=float, required=True, help="share of FIRST, in [0, 1]")
    interpolate.add_argument("--out", required=True, help="output directory (not one of the inputs)")
    interpolate.set_defaults(func=cmd_interpolate)

    from .benchmark import add_bench_parser
    from .evaluation import add_eval_parser

    add_eval_parser(sub)
    add_bench_parser(sub)

    train = sub.add_parser("train", help="train a generator (see examples/configs/*.yaml); --help for options",
                           add_help=False)
    train.set_defaults(func=None)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
