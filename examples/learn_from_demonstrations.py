"""Learning a task from demonstrations: k labelled examples become an adapter; queries are asked alone.

    python examples/learn_from_demonstrations.py [--model M] [--generator G]
"""

import argparse

import torch

from peft_generative.data import render_demonstrations, render_query
from peft_generative.loading import load_generative_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model")
parser.add_argument("--generator")
args = parser.parse_args()

DEMOS = [
    {"input": "The soup was cold and the waiter ignored us.", "output": "negative"},
    {"input": "A wonderful evening, the staff were so kind.", "output": "positive"},
    {"input": "Overpriced, noisy and the pasta was burnt.", "output": "negative"},
    {"input": "Best pizza in town, we will come back!", "output": "positive"},
]
QUERIES = [("The dessert was divine and the service quick.", "positive"),
           ("We waited an hour for a lukewarm burger.", "negative"),
           ("Lovely terrace and friendly owners.", "positive"),
           ("Rude staff, dirty tables.", "negative")]
OPTIONS = ["negative", "positive"]

model, tokenizer, info = load_generative_model(args.model, args.generator)
print("generator:", info["generator"] or "fresh (untrained: adapter answers equal the base model's)")


@torch.no_grad()
def best_option(prompt: str) -> str:
    """The option with the highest log-likelihood after `prompt` (under whatever context is active)."""
    scores = []
    for option in OPTIONS:
        ids = tokenizer(prompt + " " + option, return_tensors="pt")["input_ids"]
        n_prompt = len(tokenizer(prompt)["input_ids"])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        target = ids[0, 1:]
        scores.append(logp[n_prompt - 1:].gather(-1, target[n_prompt - 1:, None]).sum().item())
    return OPTIONS[max(range(len(OPTIONS)), key=scores.__getitem__)]


ctx = model.contextualize(render_demonstrations(DEMOS), activate=False)
correct = {"no demonstrations": 0, "demonstrations in prompt": 0, "generative adapter": 0}
for text, gold in QUERIES:
    query = render_query(text)
    with model.use_context(None):
        a = best_option(query)
        b = best_option(render_demonstrations(DEMOS) + query)
    with model.use_context(ctx):
        c = best_option(query)
    for label, pred in zip(correct, (a, b, c)):
        correct[label] += pred == gold
    print(f"{text!r:55} gold={gold:8} none={a:8} prompt={b:8} adapter={c}")
print({k: f"{v}/{len(QUERIES)}" for k, v in correct.items()})
