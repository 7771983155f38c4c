"""`peft-generative interpolate`: weight-interpolate two generators of the same base model (WiSE-FT)."""

from __future__ import annotations

import argparse

from .common import check_generator_arg, check_input_dir, check_output_dir


def weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"weight must be in [0, 1], got {text}")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("interpolate", help="weight-interpolate two generators for the same base model")
    parser.add_argument("first", help="generator directory (e.g. the fine-tuned one)")
    parser.add_argument("second", help="generator directory (e.g. the one it started from)")
    parser.add_argument("--weight", type=weight, required=True, help="share of FIRST, in [0, 1]")
    parser.add_argument("--out", required=True, help="output directory (not one of the inputs)")
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    for value in (args.first, args.second):
        check_input_dir(value, "generator")
        check_generator_arg(value, "generator")
    check_output_dir(args.out, "--out")
    from ..training.interpolation import interpolate_generators

    weights = interpolate_generators(args.first, args.second, args.weight, args.out)
    print(f"{args.weight} x {args.first} + {1 - args.weight:g} x {args.second} "
          f"({sum(t.numel() for t in weights.values()):,} parameters) written to {args.out}")
    return 0
