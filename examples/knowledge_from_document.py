"""Knowledge from a document: contextualize a text once, then ask questions without it in the prompt.

    python examples/knowledge_from_document.py [--document FILE] [--model M] [--generator G]
"""

import argparse
import json
import time
from importlib import resources

from peft_generative.answering import generate_answer
from peft_generative.loading import load_generative_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--document", help="a text file (default: the bundled Quillmoor article)")
parser.add_argument("--model")
parser.add_argument("--generator")
args = parser.parse_args()

assets = resources.files("peft_generative") / "assets"
document = open(args.document).read() if args.document else (assets / "quillmoor.txt").read_text()
questions = json.loads((assets / "quillmoor_questions.json").read_text())

model, tokenizer, info = load_generative_model(args.model, args.generator)
print("generator:", info["generator"] or "fresh (untrained: adapter answers equal the base model's)")
start = time.perf_counter()
ctx = model.contextualize(document)  # one pass over the document; the adapter is now active
print(f"{ctx.num_tokens[0]} tokens -> adapter of {ctx.adapter_numel:,} floats in {time.perf_counter() - start:.1f} s")

for item in questions:
    with model.use_context(None):
        base = generate_answer(model, tokenizer, item["question"], max_new_tokens=32, first_line=True)
    adapted = generate_answer(model, tokenizer, item["question"], max_new_tokens=32, first_line=True)
    print(f"\nQ: {item['question']}  (gold: {item['answers'][0]})\n  base:    {base}\n  adapter: {adapted}")
