"""Remembering a user across sessions: each finished exchange streams into a per-user memory on disk.

    python examples/remember_a_user.py [--memory-dir DIR] [--model M] [--generator G]
"""

import argparse
import tempfile
from pathlib import Path

from peft_generative.answering import generate_answer
from peft_generative.loading import load_generative_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--memory-dir", default=None)
parser.add_argument("--model")
parser.add_argument("--generator")
args = parser.parse_args()
memory_file = Path(args.memory_dir or tempfile.mkdtemp()) / "maya.safetensors"

model, tokenizer, info = load_generative_model(args.model, args.generator)
print("generator:", info["generator"] or "fresh (untrained: adapter answers equal the base model's)")

# Session 1: the user talks about herself; every exchange is added to her memory, which is saved.
memory = None
for message in ["Hi! I'm Maya, I live in Lisbon and I work as a marine biologist.",
                "My dog is called Pico and he loves the beach."]:
    with model.use_context(memory):
        reply = generate_answer(model, tokenizer, message, max_new_tokens=30, first_line=True)
    print(f"user: {message}\nassistant: {reply}")
    memory = model.contextualize(f"User: {message}\nAssistant: {reply}\n", extend=memory, activate=False,
                                 progress=False)
memory.save_state(str(memory_file))
print(f"\n[memory saved: {memory_file}, {memory.num_tokens[0]} tokens -> {memory.adapter_numel:,} floats]\n")

# Session 2 (a new process could start here): reload the memory and ask without any history in the prompt.
memory = model.load_context(str(memory_file), activate=False)
for question in ["What is my dog's name?", "Which city do I live in?", "What is my job?"]:
    with model.use_context(None):
        base = generate_answer(model, tokenizer, question, max_new_tokens=24, first_line=True)
    with model.use_context(memory):
        adapted = generate_answer(model, tokenizer, question, max_new_tokens=24, first_line=True)
    print(f"Q: {question}\n  without memory: {base}\n  with memory:    {adapted}")
