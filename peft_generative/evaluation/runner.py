"""`evaluate(...)`: the three methods on the same examples of one task, with accuracy and cost (the command line
`peft-generative eval` is in `peft_generative.cli.evaluate`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..data.jsonl import read_jsonl
from ..progress import progress_bar
from . import conversation, demonstrations, knowledge
from ..tuner import tuner_of
from .method_costs import adapter_bytes, base_config, kv_cache_bytes
from .metrics import best_contains, contains_answer
from .engine import ADAPTER_METHODS, ALL_METHODS, CONTROL, METHODS, Engine, Unit
from .report import bucket_label, summarize, write_report

__all__ = ["TASKS", "DEFAULT_BUCKETS", "DEFAULT_GROUP_SIZES", "evaluate"]

TASKS = {
    knowledge.TASK: knowledge.prepare,
    demonstrations.TASK: demonstrations.prepare,
    conversation.TASK: conversation.prepare,
}
VALIDATORS = {
    knowledge.TASK: knowledge.load_documents,
    demonstrations.TASK: demonstrations.load_episodes,
    conversation.TASK: conversation.load_conversations,
}
DEFAULT_BUCKETS = (512, 1024, 2048, 4096, 8192)
DEFAULT_GROUP_SIZES = (1, 4, 16)
# How reports name the generator that ships with the package (not this machine's install path).
SHIPPED_LABEL = "shipped: peft_generative/assets/generator"
# Methods whose answers do not depend on the generator: an earlier run's records can be reused.
BASELINES = ("closed_book", "prompting")


def _load(model, generator, tokenizer):
    """(peft_model, tokenizer, description) from names (loaded) or from an already-loaded peft model."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from ..loading import load_generative_model

        peft_model, tokenizer, info = load_generative_model(None if model is None else str(model), generator)
        from ..default_model import DEFAULT_MODEL

        label = SHIPPED_LABEL if info["shipped"] else info["generator"] or "fresh (untrained)"
        return peft_model, tokenizer, {"model": str(model) if model else DEFAULT_MODEL, "generator": label,
                                       "generator_trained": info["trained"]}
    tuner = tuner_of(model)
    tokenizer = tokenizer or getattr(tuner, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("Pass `tokenizer=` (or call model.set_tokenizer(tokenizer)) when giving a loaded model.")
    name = getattr(base_config(model), "_name_or_path", None) or type(model).__name__
    trained = any(bool(p.detach().abs().sum() > 0) for n, p in model.named_parameters() if "generator_B" in n)
    return model, tokenizer, {"model": name, "generator": str(generator) if generator else "(loaded model)",
                              "generator_trained": trained}


def _unique_ids(units: list[Unit]) -> None:
    seen: dict[str, int] = {}
    for u in units:
        n = seen.get(u.uid, 0)
        seen[u.uid] = n + 1
        if n:
            u.uid = f"{u.uid}#{n}"


def _reused_baselines(directory, task: str, described: dict, settings: dict, units: Sequence[Unit],
                      buckets: Sequence[int], methods: Sequence[str]) -> dict[str, list[dict]]:
    """Records of the generator-independent methods from an earlier run in `directory`, checked to be the same
    task, base model, decoding and questions as this run: `{method: records}`."""
    directory = Path(directory)
    try:
        old = json.loads((directory / "results.json").read_text(encoding="utf-8"))
        records = list(read_jsonl(directory / "predictions.jsonl"))
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot reuse baselines from {directory}: {err}. Point --reuse-baselines at the output "
                         "directory of an earlier `peft-generative eval` run (results.json + predictions.jsonl).")
    mismatch = [f"{key}: {old.get(key)!r} there, {value!r} here" for key, value in
                (("task", task), ("model", described["model"])) if old.get(key) != value]
    old_settings = old.get("settings", {})
    mismatch += [f"{key}: {old_settings.get(key)!r} there, {settings[key]!r} here"
                 for key in ("max_new_tokens", "dtype") if old_settings.get(key) != settings[key]]
    expected = {u.uid: (len(u.queries), u.context_tokens) for u in units}
    queries = {u.uid: u.queries for u in units}
    reused = {}
    for method in methods:
        if method not in BASELINES:
            continue
        mine = [r for r in records if r.get("method") == method]
        if not mine:
            continue
        found: dict[str, list] = {}
        for r in mine:
            found.setdefault(r["unit"], []).append(r)
        got = {uid: (len(rs), rs[0]["context_tokens"]) for uid, rs in found.items()}
        if got != expected:
            mismatch.append(f"{method}: the earlier run answered other contexts or questions "
                            f"({len(got)} contexts there, {len(expected)} here)")
            continue
        for uid, rs in found.items():
            for r, query in zip(rs, queries[uid]):
                r["bucket"] = bucket_label(r["context_tokens"], buckets)
                _complete_reused(r, query)
        reused[method] = mine
    if mismatch:
        raise ValueError(f"Cannot reuse baselines from {directory}: " + "; ".join(mismatch)
                         + ". Run without --reuse-baselines, or with the earlier run's settings and data.")
    return reused


def _complete_reused(record: dict, query) -> None:
    """Bring a reused record up to date: the question's labels (`kind`, `type`) come from this run's data file, and
    gold contained is computed from the prediction when the earlier run did not record it."""
    for label in knowledge.QUESTION_LABELS:
        if isinstance(query, dict) and label in query:
            record[label] = query[label]
        else:
            record.pop(label, None)
    if "contained" in record or "prediction" not in record:
        return
    try:
        if "f1" in record:  # knowledge and conversation probes
            record["contained"] = best_contains(record["prediction"], record["gold"])
        elif "correct" in record and "option_logprobs" not in record:  # generated demonstrations answers
            record["contained"] = contains_answer(record["prediction"], record["gold"])
    except ValueError:  # no gold answer with a word left after normalisation: nothing to look for
        record["contained"] = None


def _run_method(engine: Engine, task: str, method: str, units: Sequence[Unit], score, progress: bool) -> list[dict]:
    records: list[dict] = []
    costs: dict[str, tuple[float, float, int]] = {}
    bar = progress_bar(total=sum(len(u.queries) for u in units), desc=f"{task}/{method}", unit="answer",
                       enabled=progress, leave=False)

    def flush(items):
        start = time.perf_counter()
        with torch.no_grad():
            out = score(engine, method, items)
        untimed = sum(rec.pop("untimed_seconds", 0.0) for rec in out)  # measurement work, not answering
        share = (time.perf_counter() - start - untimed) / len(items)
        for (unit, _, _), rec in zip(items, out):
            seconds, flops, state = costs[unit.uid]
            n = len(unit.queries)
            records.append({
                "method": method, "unit": unit.uid, "group": unit.group, "bucket": unit.bucket,
                "context_tokens": unit.context_tokens, **rec, "seconds": share, "context_seconds": seconds / n,
                "context_flops": flops / n, "state_bytes": state,
            })
        bar.update(len(items))

    if method == CONTROL and len(units) < 2:
        raise ValueError(f"`{CONTROL}` answers with another context's adapter: it needs at least two contexts.")
    pending: list = []
    try:
        for index, unit in enumerate(units):
            ctx = None
            if method in ADAPTER_METHODS:
                source = units[(index + 1) % len(units)] if method == CONTROL else unit
                ctx, seconds, flops = engine.contextualize(source.context)
                costs[unit.uid] = (seconds, flops, adapter_bytes(ctx))
            elif method == "prompting":
                costs[unit.uid] = (0.0, 0.0, kv_cache_bytes(engine.model, min(unit.context_tokens,
                                                                               engine.max_positions)))
            else:
                costs[unit.uid] = (0.0, 0.0, 0)
            for query in unit.queries:
                pending.append((unit, query, ctx))
                if len(pending) >= engine.batch_size:
                    flush(pending)
                    pending = []
        if pending:
            flush(pending)
    finally:
        bar.close()
    return records


def evaluate(
    task: str,
    data_file: str | os.PathLike,
    model=None,
    generator: Optional[str] = None,
    limit: Optional[int] = None,
    out_dir: Optional[str | os.PathLike] = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    *,
    tokenizer=None,
    methods: Sequence[str] = METHODS,
    group_sizes: Sequence[int] = DEFAULT_GROUP_SIZES,
    max_questions: Optional[int] = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
    reuse_baselines: Optional[str | os.PathLike] = None,
    refine_steps: int = 0,
) -> dict:
    """Evaluate closed-book, prompting and generative-adapter answering on one task file.

    Args:
        task: `"knowledge"`, `"demonstrations"` or `"conversation"` (formats: docs/evaluation.md).
        data_file: a JSON Lines file in that task's format.
        model: a base model name/path (None: the embedded default) loaded with `generator`, or an already-loaded
            peft model carrying a Generative Adapter (then pass `tokenizer` unless `set_tokenizer` was called).
        generator: generator directory or Hub id (default: the shipped one for the default model, else fresh).
        limit: at most this many contexts (knowledge: per group size; others: records of the file, in order).
        out_dir: write results.json, results.md, predictions.jsonl and PNG plots there (None: write nothing).
        buckets: context-length bucket edges in tokens (a context goes to the smallest edge >= its length).
        methods: any of `"closed_book"`, `"prompting"`, `"adapter"`, and the control `"adapter_other_context"`
            (every question answered with the adapter of the next context in the file).
        group_sizes: knowledge only: documents concatenated into one context (each size evaluated separately).
        max_questions: at most this many questions/queries/probes per context.
        batch_size: answers per batch (left-padded generation, one adapter row per answer).
        max_new_tokens: answer length limit (greedy; answers stop at the first newline).
        reuse_baselines: the output directory of an earlier run on the same data and base model: its closed-book
            and prompting answers (which do not depend on the generator) are reused instead of recomputed, so that
            a new generator costs only its own answers. Checked to be the same task, model, decoding and questions;
            the result says which methods were reused and from where.
        refine_steps: test-time refinement of every generated adapter (`contextualize(..., refine_steps=N)`; 0, the
            default, is the one-pass method); its time is in the adapter's seconds per context.

    Returns:
        The result dict written to results.json (`methods`, `by_bucket`, `by_group`, `by_kind`, `control_gap`,
        `control_contained`, settings, ...), plus `records` (one per answer and method).
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}.")
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise ValueError(f"Unknown or no methods {list(methods)}; choose from {list(ALL_METHODS)}.")
    for name, value in (("limit", limit), ("max_questions", max_questions)):
        if value is not None and value < 1:
            raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}.")
    buckets = sorted(set(int(b) for b in buckets))
    if not buckets or buckets[0] < 1:
        raise ValueError(f"`buckets` must be positive token counts, got {buckets}.")
    data_file = Path(data_file)
    if not data_file.is_file():
        raise FileNotFoundError(f"No evaluation file at {data_file}.")
    VALIDATORS[task](data_file)  # a malformed file fails here, before any model is loaded

    peft_model, tokenizer, described = _load(model, generator, tokenizer)
    engine = Engine(peft_model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    refine_steps=refine_steps)
    param = next(peft_model.parameters())
    dtype = str(param.dtype).replace("torch.", "")
    was_training = peft_model.training
    peft_model.eval()
    start = time.perf_counter()
    reused: dict[str, list[dict]] = {}
    try:
        prepared = TASKS[task](data_file, engine, limit=limit, max_questions=max_questions, group_sizes=group_sizes)
        units = prepared["units"]
        _unique_ids(units)
        for unit in units:
            unit.bucket = bucket_label(unit.context_tokens, buckets)
        if reuse_baselines is not None:
            reused = _reused_baselines(reuse_baselines, task, described,
                                       {"max_new_tokens": max_new_tokens, "dtype": dtype}, units, buckets, methods)
        engine.warmup()
        records = []
        for method in methods:
            records += reused[method] if method in reused else _run_method(engine, task, method, units,
                                                                             prepared["score"], progress)
    finally:
        peft_model.train(was_training)
    wall = time.perf_counter() - start
    result = {
        "task": task,
        "data_file": str(data_file),
        **described,
        "settings": {
            "methods": list(methods), "limit": limit, "max_questions": max_questions, "buckets": buckets,
            "group_sizes": sorted(set(int(g) for g in group_sizes)) if task == knowledge.TASK else None,
            "batch_size": batch_size, "max_new_tokens": max_new_tokens, "decoding": "greedy, cut at first newline",
            "refine_steps": refine_steps,
            "dtype": dtype, "device": str(param.device),
            "torch_threads": torch.get_num_threads(), "contexts": len(units),
            "reused_baselines": {"from": str(reuse_baselines), "methods": sorted(reused)} if reused else None,
        },
        "data": prepared["info"],
        "wall_seconds": wall,
        **summarize(records, metric=prepared["metric"], methods=list(methods), buckets=buckets),
    }
    if out_dir is not None:
        write_report(result, records, out_dir)
    result["records"] = records
    return result
