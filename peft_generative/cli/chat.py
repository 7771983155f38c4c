"""`peft-generative chat`: chat with a per-user memory; each finished exchange is added to the memory."""

from __future__ import annotations

import argparse
import sys

from .common import add_model_args, check_model_args, check_output_dir, load_model
from .memory import locked, memory_path


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("chat", help="chat; each finished exchange streams into a per-user memory",
                            description="Chat with a memory per user: every exchange is contextualized into the "
                                        "user's memory file, which the next answers use. Several sessions of the "
                                        "same user may run at once: each exchange is added under a lock to the "
                                        "latest memory on disk.")
    add_model_args(parser)
    parser.add_argument("--user", required=True,
                        help="user id: letters, digits, . _ - @ + (names the memory file in --memory-dir)")
    parser.add_argument("--memory-dir", default="memories", help="where memories are saved (default ./memories)")
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def run(args) -> int:
    check_model_args(args)
    memory_dir = check_output_dir(args.memory_dir, "--memory-dir")
    path = memory_path(memory_dir, args.user)

    from ..answering import generate_answer

    model, tokenizer, _ = load_model(args)
    memory_dir.mkdir(parents=True, exist_ok=True)

    def latest():
        return model.load_context(str(path), activate=False) if path.exists() else None

    with locked(path):
        memory = latest()
    print(f"[{args.user}: " + (f"memory of {memory.num_tokens[0]} tokens loaded]" if memory else "new user]"),
          file=sys.stderr, flush=True)
    interactive = sys.stdin.isatty()
    while True:
        try:
            message = input("you> ") if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not interactive and not message:
            break
        message = message.strip()
        if message in ("", "exit", "quit"):
            break
        with locked(path):
            memory = latest()  # another session of this user may have added exchanges
        with model.use_context(memory):
            reply = generate_answer(model, tokenizer, message, max_new_tokens=args.max_new_tokens)
        print(f"assistant> {reply}", flush=True)
        exchange = f"User: {message}\nAssistant: {reply}\n"
        with locked(path):  # re-read under the lock, so that no other session's exchange is overwritten
            memory = model.contextualize(exchange, extend=latest(), activate=False, progress=False)
            memory.save_state(str(path))  # atomic: a crash never leaves a half-written memory
    if memory is not None:
        print(f"[memory saved: {path} ({memory.num_tokens[0]} tokens)]", file=sys.stderr)
    return 0
