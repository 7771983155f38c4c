"""What every subcommand shares: the model arguments, checks of files and arguments made before any model is
loaded, loading the model quietly, and the exit-code convention.

Exit codes: 0 success; 2 a usage error (a bad argument or file, reported before any model is loaded);
1 a failure at run time (a model that cannot be loaded, a file that cannot be written, ...); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Optional

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

UNTRAINED = ("NOTE: no trained generator is available for this model, so a fresh (untrained) generator is used: "
             "its adapters are exactly zero, so answers and scores equal the base model's (closed-book).")

DEFAULT_MODEL_NAMES = ("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
GENERATOR_TYPE = "GENERATIVE_ADAPTER"
# `org/name` or `name`, as the Hub spells repository ids
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")

logger = logging.getLogger("peft_generative")


class UsageError(Exception):
    """A mistake in the command line (argument, file): exit code 2, no model loaded."""


# ---- argument types ---------------------------------------------------------------------------------------------
def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_verbose_arg(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", default=default,
                        help="show library warnings, progress bars and full tracebacks")


def add_refine_arg(parser: argparse.ArgumentParser) -> None:
    """`--refine-steps` (test-time refinement of each generated adapter; 0 = the one-pass method)."""
    parser.add_argument("--refine-steps", type=non_negative_int, default=0, metavar="N",
                        help="test-time refinement: N gradient steps on each generated adapter's state against the "
                             "reconstruction of its context (default 0: the one-pass method)")


def add_model_args(parser: argparse.ArgumentParser, *, max_new_tokens: Optional[int] = 48) -> None:
    """`--model`, `--generator` (and `--max-new-tokens` unless None) as every model-loading subcommand has them."""
    parser.add_argument("--model", default=None,
                        help="base causal LM (directory or Hub id); default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--generator", default=None,
                        help="generator directory or Hub id; default: the one shipped for the default model")
    if max_new_tokens is not None:
        parser.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens,
                            help=f"answer length limit in tokens (default {max_new_tokens})")


# ---- checks made before loading anything -------------------------------------------------------------------------
def _looks_like_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and not value.startswith(".")


def check_model_arg(value: Optional[str]) -> None:
    """A directory with a config.json, the default model's name, or something shaped like a Hub id."""
    if value is None or value in DEFAULT_MODEL_NAMES:
        return
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {value}: the directory has no config.json, so it is not a transformers model "
                             "directory.")
        return
    if path.exists():
        raise UsageError(f"--model {value}: is a file; pass a model directory (with config.json) or a Hub id.")
    if not _looks_like_hub_id(value):
        raise UsageError(f"--model {value}: no such directory (and not a Hub id like 'org/name').")


def check_generator_arg(value: Optional[str], option: str = "--generator") -> None:
    """A directory holding a Generative Adapter generator (adapter_config.json of that type) or a Hub id."""
    if value is None:
        return
    path = Path(value).expanduser()
    if path.is_dir():
        config = path / "adapter_config.json"
        if not config.is_file():
            raise UsageError(f"{option} {value}: the directory has no adapter_config.json, so it is not a saved "
                             "generator (save one with model.save_pretrained(...)).")
        import json

        try:
            peft_type = json.loads(config.read_text(encoding="utf-8")).get("peft_type")
        except (OSError, ValueError) as exc:
            raise UsageError(f"{option} {value}: cannot read {config}: {exc}") from None
        if peft_type != GENERATOR_TYPE:
            raise UsageError(f"{option} {value}: this is a {peft_type} adapter, not a Generative Adapter generator "
                             f"(peft_type {GENERATOR_TYPE}). A LoRA exported from a context is used with plain peft, "
                             "not as --generator.")
        return
    if path.exists():
        raise UsageError(f"{option} {value}: is a file; pass a generator directory or a Hub id.")
    if not _looks_like_hub_id(value):
        raise UsageError(f"{option} {value}: no such directory (and not a Hub id like 'org/name').")


def check_model_args(args: argparse.Namespace) -> None:
    check_model_arg(args.model)
    check_generator_arg(args.generator)


def check_input_file(value: str, option: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{option} {value}: is a directory; pass a file.")
    if not path.is_file():
        raise UsageError(f"{option} {value}: no such file.")
    return path


def check_state_file(value: str, option: str = "--state") -> Path:
    """A context state saved with `ctx.save_state` (e.g. a chat memory): a safetensors file with our metadata."""
    path = check_input_file(value, option)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise UsageError(f"{option} {value}: not a readable safetensors file (corrupt or truncated): {exc}") from None
    if "peft_generative" not in metadata:
        raise UsageError(f"{option} {value}: a safetensors file, but not a saved context state "
                         "(save one with ctx.save_state(path), or use a chat memory).")
    return path


def check_input_dir(value: str, option: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UsageError(f"{option} {value}: " + ("is a file; pass a directory." if path.exists()
                                                  else "no such directory."))
    return path


def check_output_dir(value: str, option: str) -> Path:
    """A directory that exists or can be created: not a file, and no file in the way above it."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value}: is a file; pass a directory (it is created if missing).")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {value}: {parent} is a file, so the directory cannot be created.")
            break
    return path


def read_text(value: str, option: str = "--context") -> str:
    """The text of a UTF-8 file, or of stdin for '-'; a usage error for a directory, a binary or an empty input."""
    if value == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"{option} -: reads the text from stdin, but stdin is a terminal; pipe the text in "
                             f"(cat doc.txt | peft-generative ... {option} -) or pass a file.")
        data = sys.stdin.buffer.read()
        name = "stdin"
    else:
        path = check_input_file(value, option)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{option} {value}: cannot be read: {exc.strerror or exc}") from None
        name = str(path)
    if b"\x00" in data:
        raise UsageError(f"{option}: {name} looks like a binary file (it contains NUL bytes); pass a UTF-8 text file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option}: {name} is not UTF-8 text (byte {exc.start}); pass a UTF-8 text file.") from None
    if not text.strip():
        raise UsageError(f"{option}: {name} is empty; there is no text to contextualize.")
    return text


# ---- loading ------------------------------------------------------------------------------------------------------
def quiet_libraries(verbose: bool) -> None:
    """Hide transformers' warnings and its 'Loading weights' bar unless --verbose (errors still show)."""
    if verbose:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_model(args: argparse.Namespace):
    """(peft_model, tokenizer, info) for --model/--generator, with the untrained note on stderr when it applies."""
    from ..loading import load_generative_model

    quiet_libraries(getattr(args, "verbose", False))
    model, tokenizer, info = load_generative_model(args.model, args.generator)
    if not info["trained"]:
        print(UNTRAINED, file=sys.stderr)
    return model, tokenizer, info


def progress_enabled() -> bool:
    from ..progress import progress_bars_enabled

    return progress_bars_enabled()


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (it may be replaced, e.g. by tests)."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("[peft-generative] %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(verbose: bool) -> None:
    """The package's log records (e.g. the one-time conversion of the default model) go to stderr."""
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
