"""`peft-generative`: contextualize documents, chat with memory, export adapters, evaluate, benchmark, train.

Every command runs offline on the embedded default model unless `--model` names another causal LM.
Exit codes: 0 done, 2 usage error (bad argument or file, found before any model loads), 1 failure at run time.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Optional

from . import ask, bench, chat, demo, evaluate, export, interpolate, train
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, add_verbose_arg, configure_logging

__all__ = ["build_parser", "main"]

SUBCOMMANDS = (demo, ask, chat, export, interpolate, evaluate, bench, train)


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peft-generative", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"peft-generative {_version()}")
    add_verbose_arg(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        command = module.add_parser(sub)
        if module is not train:
            add_verbose_arg(command)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "train":
            args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging(args.verbose)
    if not args.verbose:
        import warnings

        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
    try:
        return args.run(args, extra) if args.command == "train" else args.run(args)
    except UsageError as exc:
        print(f"{args.command_parser.prog}: error: {exc}", file=sys.stderr)
        print(f"(see {args.command_parser.prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a failure at run time: the message, not a traceback (--verbose shows it)
        if args.verbose:
            traceback.print_exc()
        print(f"{args.command_parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
