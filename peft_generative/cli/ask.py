"""`peft-generative ask`: contextualize a text file (or stdin) and answer questions with its adapter."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, TextIO

from .common import (UsageError, add_model_args, add_refine_arg, check_model_args, check_output_dir, load_model,
                     progress_enabled, read_text)

TERMINAL = "/dev/tty"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("ask", help="contextualize a file (or - for stdin) and answer questions",
                            description="Contextualize a text and answer questions with the generated adapter "
                                        "(the text is not in the prompt). Without --question, questions are read "
                                        "interactively; when the text comes from stdin they are read from the "
                                        "terminal.")
    add_model_args(parser)
    parser.add_argument("--context", required=True, help="UTF-8 text file, or - for stdin")
    parser.add_argument("--question", "-q", action="append", help="question (repeatable); none = interactive")
    parser.add_argument("--interactive", "-i", action="store_true", help="keep asking after the given questions")
    parser.add_argument("--save-lora", metavar="DIR", help="also save the generated adapter as a plain LoRA directory")
    add_refine_arg(parser)
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def open_terminal() -> Optional[TextIO]:
    try:
        return open(TERMINAL, "r+", encoding="utf-8")
    except OSError:
        return None


def questions_from(stream: TextIO, prompt_to: TextIO):
    """Lines typed at `question> ` until an empty line, `exit`, `quit` or end of input."""
    while True:
        prompt_to.write("question> ")
        prompt_to.flush()
        line = stream.readline()
        if not line:
            break
        question = line.strip()
        if question in ("", "exit", "quit"):
            break
        yield question


def run(args) -> int:
    check_model_args(args)
    if args.save_lora:
        check_output_dir(args.save_lora, "--save-lora")
    interactive = args.interactive or not args.question
    terminal = None
    if interactive and args.context == "-":
        terminal = open_terminal()
        if terminal is None:
            raise UsageError("the context is read from stdin (--context -), so questions cannot be read from it too, "
                             "and there is no terminal to read them from: pass them with --question, or give the "
                             "context as a file (--context doc.txt) to ask interactively.")
    text = read_text(args.context, "--context")

    from ..answering import generate_answer

    model, tokenizer, _ = load_model(args)
    start = time.perf_counter()
    ctx = model.contextualize(text, progress=progress_enabled(), refine_steps=args.refine_steps)
    print(f"[contextualized {ctx.num_tokens[0]} tokens in {time.perf_counter() - start:.2f} s]", file=sys.stderr)
    if args.save_lora:
        ctx.save_pretrained(args.save_lora)
        print(f"[adapter saved as a LoRA in {args.save_lora}]", file=sys.stderr)
    for question in args.question or []:
        print(generate_answer(model, tokenizer, question, max_new_tokens=args.max_new_tokens), flush=True)
    if interactive:
        stream, prompt_to = (terminal, terminal) if terminal is not None else (sys.stdin, sys.stderr)
        try:
            for question in questions_from(stream, prompt_to):
                print(generate_answer(model, tokenizer, question, max_new_tokens=args.max_new_tokens), flush=True)
        finally:
            if terminal is not None:
                terminal.close()
    return 0
