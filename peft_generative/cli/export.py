"""`peft-generative export`: a context (a text, or a saved state such as a chat memory) as a plain LoRA."""

from __future__ import annotations

import argparse

from .common import (add_model_args, check_model_args, check_output_dir, check_state_file, load_model, progress_enabled,
                     read_text)


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("export", help="export a context as a plain PEFT LoRA directory",
                            description="Write the adapter of a context as an ordinary PEFT LoRA directory, "
                                        "loadable with plain peft or served by vLLM (no peft-generative needed).")
    add_model_args(parser, max_new_tokens=None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", help="UTF-8 text file, or - for stdin")
    source.add_argument("--state", help="a saved context state (.safetensors), e.g. a chat memory")
    parser.add_argument("--out", required=True, help="output directory (created; files in it are replaced)")
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    check_model_args(args)
    check_output_dir(args.out, "--out")
    if args.state:
        check_state_file(args.state, "--state")
        text = None
    else:
        text = read_text(args.context, "--context")
    model, _, _ = load_model(args)
    if text is None:
        ctx = model.load_context(args.state, activate=False)
    else:
        ctx = model.contextualize(text, activate=False, progress=progress_enabled())
    ctx.save_pretrained(args.out)
    print(f"LoRA adapter (rank {ctx.config.adapter_rank}, {ctx.adapter_numel:,} floats) written to {args.out}")
    return 0
