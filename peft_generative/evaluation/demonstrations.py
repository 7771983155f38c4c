"""Learning from demonstrations (MetaICL-like): k input/output examples are the context, then new inputs.

Input, one JSON object per line: `{"demonstrations": [{"input", "output"}, ...], "queries": [{"input", "output"},
...], "options": [str, ...]}` (`options` optional; `"task"`, `"k"`, `"episode"` optional and reported). The
context is `render_demonstrations(demonstrations)` and each query is asked as `render_query(input)`: the formats
the training data uses (`peft_generative.data.demonstrations`). With `options`, the prediction is the option
with the highest log-likelihood as the reply to the query (summed over its tokens, end-of-turn included);
without, the greedy answer. Accuracy = exact match (SQuAD normalisation) with the gold output. Generated answers
(episodes without options) also record `contained`: whether the gold output occurs in the answer as whole words
(`metrics.contains_answer`), which credits a right label wrapped in a sentence; a prediction chosen among options
does not (it is one of the options, so containment would only measure how the options overlap).
"""

from __future__ import annotations

from typing import Optional

from ..data.demonstrations import render_demonstrations, render_query
from .method_costs import adapter_flops_per_token, generation_flops, scoring_flops
from .engine import ADAPTER_METHODS, Engine, Unit
from .records import EvalDataError, need, need_list, need_text, read_records
from .metrics import contains_answer, exact_match, normalize_answer

__all__ = ["TASK", "load_episodes", "prepare", "score_queries"]

TASK = "demonstrations"


def _pairs(value, what: str, where: str) -> list[dict]:
    out = []
    for i, item in enumerate(need_list(value, what, where)):
        at = f"{where} ({what} {i})"
        if not isinstance(item, dict):
            raise EvalDataError(f"{at}: expected an object with 'input' and 'output'.")
        out.append({"input": need_text(need(item, "input", at, TASK), "'input'", at),
                    "output": need_text(need(item, "output", at, TASK), "'output'", at)})
    return out


def load_episodes(path) -> list[dict]:
    """Validated episodes in file order."""
    episodes = []
    for where, record in read_records(path, TASK):
        demos = _pairs(need(record, "demonstrations", where, TASK), "demonstrations", where)
        queries = _pairs(need(record, "queries", where, TASK), "queries", where)
        options = record.get("options")
        if options is not None:
            options = [need_text(o, "every option", where) for o in need_list(options, "'options'", where)]
            known = {normalize_answer(o) for o in options}
            for q in queries:
                if normalize_answer(q["output"]) not in known:
                    raise EvalDataError(f"{where}: query output {q['output']!r} is not one of the options {options}.")
        episodes.append({
            "id": str(record.get("id", where.rsplit(":", 1)[-1])), "task": str(record.get("task", "task")),
            "k": int(record.get("k", len(demos))), "episode": record.get("episode"),
            "demonstrations": demos, "queries": queries, "options": options,
        })
    return episodes


def prepare(path, engine: Engine, *, limit: Optional[int] = None, max_questions: Optional[int] = None, **_) -> dict:
    episodes = load_episodes(path)[:limit]
    units = []
    for ep in episodes:
        context = render_demonstrations(ep["demonstrations"])
        units.append(Unit(
            uid=f"{ep['task']}-k{ep['k']}-e{ep['episode']}" if ep["episode"] is not None else ep["id"],
            context=context, queries=ep["queries"][:max_questions], group=f"k={ep['k']}",
            context_tokens=engine.count_tokens(context),
            meta={"task": ep["task"], "k": ep["k"], "options": ep["options"]},
        ))
    return {"units": units, "metric": "accuracy", "score": score_queries,
            "info": {"episodes": len(units), "tasks": sorted({u.meta["task"] for u in units}),
                     "scoring": sorted({"options" if u.meta["options"] else "generation" for u in units})}}


def score_queries(engine: Engine, method: str, batch: list) -> list[dict]:
    """Predictions for `(unit, {"input", "output"}, ctx)` items: best option by log-likelihood, or greedy."""
    records: list[Optional[dict]] = [None] * len(batch)
    ranked = [i for i, (unit, _, _) in enumerate(batch) if unit.meta["options"]]
    free = [i for i, (unit, _, _) in enumerate(batch) if not unit.meta["options"]]

    def prompt(unit, query, reserve):
        return engine.prompt(render_query(query["input"]), unit.context if method == "prompting" else None, reserve)

    if ranked:
        rows, contexts, spans = [], [], []
        for i in ranked:
            unit, query, ctx = batch[i]
            options = [engine.continuation_ids(o) for o in unit.meta["options"]]
            ids, truncated = prompt(unit, query, max(len(o) for o in options))
            spans.append((i, ids, options, truncated, len(rows)))
            rows += [(ids, o) for o in options]
            contexts += [ctx] * len(options)
        scores = engine.continuation_logprobs(rows, contexts if method in ADAPTER_METHODS else None)
        for i, ids, options, truncated, start in spans:
            unit, query, ctx = batch[i]
            values = scores[start:start + len(options)]
            best = max(range(len(values)), key=values.__getitem__)
            prediction = unit.meta["options"][best]
            extra = adapter_flops_per_token(ctx) if method in ADAPTER_METHODS else 0.0
            records[i] = {
                "input": query["input"], "prediction": prediction, "gold": query["output"],
                "correct": exact_match(prediction, query["output"]), "option_logprobs": values,
                "prompt_tokens": len(ids), "generated_tokens": 0, "truncated": truncated,
                "flops": scoring_flops(engine.config, len(ids), [len(o) for o in options], extra),
            }
    if free:
        prompts = [prompt(batch[i][0], batch[i][1], engine.max_new_tokens) for i in free]
        contexts = [batch[i][2] for i in free] if method in ADAPTER_METHODS else None
        answers = engine.generate([p for p, _ in prompts], contexts)
        for i, (ids, truncated), (answer, n_new) in zip(free, prompts, answers):
            unit, query, ctx = batch[i]
            extra = adapter_flops_per_token(ctx) if method in ADAPTER_METHODS else 0.0
            records[i] = {
                "input": query["input"], "prediction": answer, "gold": query["output"],
                "correct": exact_match(answer, query["output"]),
                # None: a gold output with no word after normalisation cannot be looked for
                "contained": contains_answer(answer, query["output"]) if normalize_answer(query["output"]) else None,
                "prompt_tokens": len(ids), "generated_tokens": n_new, "truncated": truncated,
                "flops": generation_flops(engine.config, len(ids), n_new, extra),
            }
    return records
