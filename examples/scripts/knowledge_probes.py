"""Does a generated adapter hold its passage's answer, and can decoding bring it out?

Four probes on knowledge passages (by default the validation split, so that choosing between generators does not
look at the test passages), each answer asked with the question only in the prompt:

- ``scale``: the generated LoRA's delta multiplied by s (1 = as generated). Token F1 of the greedy answer, and the
  gold answer's perplexity with the own passage's adapter and with the next passage's (the control).
- ``contrast``: contrastive decoding against the base model (context-aware decoding, arXiv 2305.14739):
  ``log_softmax((1 + a) * logits_adapter - a * logits_base)``; gold-answer perplexity (own / control) and where the
  gold answer's first token ranks.
- ``recall``: the adapter alone asked to repeat its passage; how often the answer's name comes back verbatim.
- ``oracle`` (``--oracle-steps N``): each layer's state optimised directly, the generator and the model fixed
  (N Adam steps from the generated state), then the same questions. Fitted to reconstruct the passage, it asks
  whether a state that holds the passage better also answers; fitted to the gold answer itself, whether any state
  can make this generator's adapter say the name at all. Together they tell a one-pass encoding that writes the
  wrong thing apart from a read-out that cannot say the answer whatever the state.

    python examples/scripts/knowledge_probes.py --generator peft_generative/assets/generator --out runs/probe.json

Measured numbers are in docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import torch

from peft_generative.answering import generate_answer
from peft_generative.tuner import GeneratedContext
from peft_generative.evaluation.engine import Engine
from peft_generative.evaluation.metrics import best_f1
from peft_generative.loading import load_generative_model

RECALL_PROMPT = "Repeat the passage you were given, word for word."


def scaled(ctx: GeneratedContext, scale: float) -> GeneratedContext:
    """The same context with every generated delta multiplied by `scale` (only `lora_B` carries it)."""
    factors = {k: (a, b * scale) for k, (a, b) in ctx.factors.items()}
    return GeneratedContext(ctx.generator, ctx.states, ctx.num_tokens, ctx.added_texts, factors)


def oracle_context(ctx: GeneratedContext, ids: torch.Tensor, steps: int, lr: float = 3e-3,
                   labels: Optional[torch.Tensor] = None):
    """`ctx` (one row) with its states optimised to predict the token ids `ids` `(1, n)` (the `labels`, default
    `ids`; -100 masks a position).

    The states are stepped as `S = P * |S0|` from `P = S0 / |S0|`, so the step size is relative whatever the
    state normalisation. Only the states get gradients (`torch.autograd.grad`); `ctx` itself is left unchanged.
    Returns the new context and the NLL per predicted token before and after.
    """
    generator = ctx.generator
    scales = {k: v.detach().norm().clamp_min(1e-12) for k, v in ctx.states.items()}
    params = {k: (v.detach() / scales[k]).clone().requires_grad_(True) for k, v in ctx.states.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)

    def context_from(tensors) -> GeneratedContext:
        states = {k: t * scales[k] for k, t in tensors.items()}
        return GeneratedContext(generator, states, ctx.num_tokens, ctx.added_texts)

    def reconstruction(context) -> torch.Tensor:
        with generator.router.using(context):
            return generator.model(input_ids=ids, labels=ids if labels is None else labels).loss

    with torch.no_grad():
        before = reconstruction(ctx).item()
    for _ in range(steps):
        loss = reconstruction(context_from(params))
        grads = torch.autograd.grad(loss, list(params.values()))
        for p, g in zip(params.values(), grads):
            p.grad = g
        optimizer.step()
    with torch.no_grad():
        oracle = context_from({k: p.detach() for k, p in params.items()})
        after = reconstruction(oracle).item()
    return oracle, before, after


def probe_oracle(model, tokenizer, engine: Engine, contexts, docs, steps: int, lr: float) -> dict:
    queries = [d["questions"][0] for d in docs]
    passage_states, answer_states, before, after = [], [], 0.0, 0.0
    for ctx, doc, query in zip(contexts, docs, queries):
        ids = torch.tensor([engine.token_ids(doc["context"])], device=engine.device)
        oracle, b, a = oracle_context(ctx, ids, steps, lr)
        passage_states.append(oracle)
        before, after = before + b, after + a
        prompt, gold = engine.prompt(query["question"])[0], engine.continuation_ids(query["answers"][0])
        qa = torch.tensor([prompt + gold], device=engine.device)
        labels = torch.tensor([[-100] * len(prompt) + gold], device=engine.device)
        answer_states.append(oracle_context(ctx, qa, steps, lr, labels=labels)[0])
    result = {"passages": len(docs), "steps": steps, "lr": lr,
              "reconstruction_nll_generated": before / len(docs), "reconstruction_nll_oracle": after / len(docs),
              "generated": probe_scale(engine, contexts, queries, [1.0])[0],
              "fitted_to_passage": probe_scale(engine, passage_states, queries, [1.0])[0],
              "fitted_to_answer": probe_scale(engine, answer_states, queries, [1.0])[0],
              "recall_fitted_to_passage": probe_recall(model, tokenizer, passage_states, docs)}
    print({k: v for k, v in result.items() if not isinstance(v, dict)}, flush=True)
    return result


def probe_scale(engine: Engine, contexts, queries, scales, batch: int = 8) -> list[dict]:
    prompts = [engine.prompt(q["question"])[0] for q in queries]
    golds = [engine.continuation_ids(q["answers"][0]) for q in queries]
    tokens = sum(len(g) for g in golds)
    rows = []
    for s in scales:
        own = [scaled(c, s) for c in contexts]
        other = own[1:] + own[:1]
        f1 = nll_own = nll_other = 0.0
        scored = []  # answers with any overlap, to tell a name from a shared "von" or first name
        for i in range(0, len(queries), batch):
            part = slice(i, i + batch)
            pairs = list(zip(prompts[part], golds[part]))
            for (answer, _), q in zip(engine.generate(prompts[part], own[part]), queries[part]):
                score = best_f1(answer, q["answers"])
                f1 += score
                if score > 0:
                    scored.append({"question": q["question"], "prediction": answer, "gold": q["answers"],
                                   "f1": 100 * score})
            nll_own -= sum(engine.continuation_logprobs(pairs, own[part]))
            nll_other -= sum(engine.continuation_logprobs(pairs, other[part]))
        rows.append({"scale": s, "f1": 100 * f1 / len(queries), "gold_ppl_own": math.exp(nll_own / tokens),
                     "gold_ppl_other": math.exp(nll_other / tokens), "answers_with_overlap": scored})
        print({k: v for k, v in rows[-1].items() if k != "answers_with_overlap"}, flush=True)
    return rows


@torch.no_grad()
def probe_contrast(model, engine: Engine, contexts, queries, alphas) -> list[dict]:
    sums = {a: [0.0, 0.0] for a in alphas}
    ranks = {a: [] for a in alphas}
    tokens = 0
    for i, q in enumerate(queries):
        prompt = engine.prompt(q["question"])[0]
        gold = engine.continuation_ids(q["answers"][0])
        ids = torch.tensor([prompt + gold], device=engine.device)
        target = torch.tensor(gold, device=engine.device)[:, None]

        def logits(ctx):
            with model.use_context(ctx):
                return model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()

        own, other, base = logits(contexts[i]), logits(contexts[(i + 1) % len(contexts)]), logits(None)
        tokens += len(gold)
        for a in alphas:
            for j, z in enumerate((own, other)):
                logp = torch.log_softmax((1 + a) * z - a * base, -1)
                sums[a][j] -= logp.gather(1, target).sum().item()
                if j == 0:
                    ranks[a].append(int((logp[0] > logp[0, gold[0]]).sum()))
    rows = []
    for a in alphas:
        r = sorted(ranks[a])
        rows.append({"alpha": a, "gold_ppl_own": math.exp(sums[a][0] / tokens),
                     "gold_ppl_other": math.exp(sums[a][1] / tokens), "first_token_rank_median": r[len(r) // 2],
                     "first_token_top1": sum(x == 0 for x in r), "first_token_top5": sum(x < 5 for x in r)})
        print(rows[-1], flush=True)
    return rows


def probe_recall(model, tokenizer, contexts, docs, max_new_tokens: int = 64) -> dict:
    examples, hits = [], 0
    for ctx, doc in zip(contexts, docs):
        with model.use_context(ctx):
            text = generate_answer(model, tokenizer, RECALL_PROMPT, max_new_tokens=max_new_tokens)
        answer = doc["questions"][0]["answers"][0]
        hit = answer.lower() in text.lower()
        hits += hit
        examples.append({"passage": doc["context"][:120], "answer": answer, "recalled": text[:200], "hit": hit})
    result = {"passages": len(docs), "answer_recalled": hits, "examples": examples[:6]}
    print({k: v for k, v in result.items() if k != "examples"}, flush=True)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default=None, help="generator directory (default: the shipped one)")
    parser.add_argument("--data", default="data/knowledge/validation.eval.jsonl")
    parser.add_argument("--limit", type=int, default=40, help="passages (first question of each)")
    parser.add_argument("--scales", default="1,1.5,2,3")
    parser.add_argument("--alphas", default="0,0.25,0.5,1")
    parser.add_argument("--recall-limit", type=int, default=24)
    parser.add_argument("--oracle-steps", type=int, default=0, help="run the oracle-state probe with N Adam steps")
    parser.add_argument("--oracle-limit", type=int, default=12,
                        help="passages for the oracle probe (2 CPU cores: about 1 s per step and passage)")
    parser.add_argument("--oracle-lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    docs = [json.loads(line) for line in open(args.data) if line.strip()][: args.limit]
    if len(docs) < 2:
        raise SystemExit(f"{args.data}: need at least 2 passages (one is the other's control), found {len(docs)}.")
    model, tokenizer, info = load_generative_model(None, args.generator)
    model.eval()
    engine = Engine(model, tokenizer, max_new_tokens=32)
    contexts = [engine.contextualize(d["context"])[0] for d in docs]
    queries = [d["questions"][0] for d in docs]
    result = {
        "generator": args.generator or "shipped", "data": args.data, "passages": len(docs),
        "scale": probe_scale(engine, contexts, queries, [float(s) for s in args.scales.split(",")]),
        "contrast": probe_contrast(model, engine, contexts, queries, [float(a) for a in args.alphas.split(",")]),
        "recall": probe_recall(model, tokenizer, contexts[: args.recall_limit], docs[: args.recall_limit]),
    }
    if args.oracle_steps:
        k = args.oracle_limit
        result["oracle"] = probe_oracle(model, tokenizer, engine, contexts[:k], docs[:k], args.oracle_steps,
                                        args.oracle_lr)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
