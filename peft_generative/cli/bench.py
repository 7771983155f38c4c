"""`peft-generative bench`: speed and memory against prompting and plain LoRA; the work is
`peft_generative.benchmark.run_benchmarks`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .common import add_model_args, check_model_args, check_output_dir, positive_int, progress_enabled, quiet_libraries

# the same as peft_generative.benchmark.FIGURES / DTYPES (here so that `--help` does not import torch; tested)
FIGURES = ("contextualize", "answer", "decode", "batched", "train_step")
DTYPES = ("bfloat16", "float16", "float32")


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("bench", help="speed and memory vs prompting and plain LoRA (prints a table, writes JSON)")
    add_model_args(parser, max_new_tokens=None)
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[512, 2048, 8192],
                        help="context lengths for the answering figure (default 512 2048 8192)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per measurement, after a warm-up")
    parser.add_argument("--new-tokens", type=positive_int, default=32, help="tokens generated per answer (default 32)")
    parser.add_argument("--batch", type=positive_int, default=8, help="contexts in the batched figure (default 8)")
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES), help="which figures to run")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--out", default="bench-results", help="directory for bench.json and bench.md")
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    check_model_args(args)
    check_output_dir(args.out, "--out")
    from ..benchmark import run_benchmarks
    from ..benchmark.tables import benchmark_markdown as markdown

    quiet_libraries(args.verbose)
    command = "peft-generative " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    results = run_benchmarks(args.model, args.generator, context_lengths=args.lengths, repeats=args.repeats,
                             new_tokens=args.new_tokens, batch=args.batch, device=args.device, dtype=args.dtype,
                             figures=args.figures, out=args.out, command=command, progress=progress_enabled())
    print(markdown(results))
    print(f"wrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.md'}")
    return 0
