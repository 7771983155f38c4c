"""`peft-generative eval`: closed-book, prompting and generative adapter on a task file (accuracy and cost);
the work is `peft_generative.evaluation.evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (UNTRAINED, UsageError, add_model_args, add_refine_arg, check_input_dir, check_input_file,
                     check_model_args, check_output_dir, int_list, positive_int, progress_enabled, quiet_libraries)

# the same names as peft_generative.evaluation.TASKS / ALL_METHODS / METHODS / DEFAULT_BUCKETS /
# DEFAULT_GROUP_SIZES (kept here so that `--help` does not import torch; a test checks that they agree)
TASKS = ("conversation", "demonstrations", "knowledge")
ALL_METHODS = ("closed_book", "prompting", "adapter", "adapter_other_context")
METHODS = ("closed_book", "prompting", "adapter")
DEFAULT_BUCKETS = (512, 1024, 2048, 4096, 8192)
DEFAULT_GROUP_SIZES = (1, 4, 16)


def method_list(text: str) -> list[str]:
    values = [x.strip().replace("-", "_") for x in text.split(",") if x.strip()]
    bad = [v for v in values if v not in ALL_METHODS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"methods must be among {','.join(ALL_METHODS)}, got {text!r}")
    return values


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "eval", help="compare closed-book, prompting and generative adapter on a task file (accuracy and cost)",
        description="Evaluate closed-book, context-in-prompt and generative-adapter answering on the same examples. "
                    "File formats: docs/evaluation.md.",
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="which scenario the file holds")
    parser.add_argument("--data", required=True, help="JSON Lines file in the task's format")
    add_model_args(parser, max_new_tokens=32)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="at most N contexts (knowledge: per group size; others: first N records)")
    parser.add_argument("--out", default=None, help="output directory (default: eval_results/<task>)")
    parser.add_argument("--buckets", type=int_list, default=list(DEFAULT_BUCKETS),
                        help="context-length bucket edges in tokens (default 512,1024,2048,4096,8192)")
    parser.add_argument("--group-sizes", type=int_list, default=list(DEFAULT_GROUP_SIZES),
                        help="knowledge: documents per context, evaluated separately (default 1,4,16)")
    parser.add_argument("--max-questions", type=positive_int, default=None,
                        help="at most N questions / queries / probes per context")
    parser.add_argument("--methods", type=method_list, default=list(METHODS),
                        help="comma-separated subset of closed_book,prompting,adapter (default: all three), or "
                             "adapter_other_context: the control, every question answered with the adapter of the "
                             "next context in the file")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="answers per batch (default 8)")
    parser.add_argument("--reuse-baselines", default=None, metavar="DIR",
                        help="reuse the closed-book and prompting answers of an earlier run in DIR (same data, "
                             "model and settings; checked): only the generator's methods are run again")
    add_refine_arg(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    """Run `evaluate` from parsed `eval` arguments; prints the Markdown tables and the files written."""
    check_input_file(args.data, "--data")
    check_model_args(args)
    out = args.out or str(Path("eval_results") / args.task)
    check_output_dir(out, "--out")
    if args.reuse_baselines:
        check_input_dir(args.reuse_baselines, "--reuse-baselines")

    from ..evaluation import evaluate, to_markdown
    from ..evaluation.records import EvalDataError

    quiet_libraries(args.verbose)
    try:
        result = evaluate(
            args.task, args.data, model=args.model, generator=args.generator, limit=args.limit, out_dir=out,
            buckets=args.buckets, methods=args.methods, group_sizes=args.group_sizes,
            max_questions=args.max_questions, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            progress=not args.no_progress and progress_enabled(), reuse_baselines=args.reuse_baselines,
            refine_steps=args.refine_steps,
        )
    except EvalDataError as exc:  # a malformed data file is found before any model is loaded

        raise UsageError(f"--data {args.data}: {exc}") from None
    print(to_markdown(result))
    for kind, path in result.get("files", {}).items():
        print(f"[{kind}] {path}")
    if result.get("plots_skipped"):
        print(f"NOTE: no plots: {result['plots_skipped']}", file=sys.stderr)
    if not result.get("generator_trained", True):
        print(UNTRAINED, file=sys.stderr)
    return 0
