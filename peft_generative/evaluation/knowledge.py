"""Knowledge from documents: questions answered from a document (or a group of documents) seen only as context.

Input, one JSON object per line: `{"context": str, "questions": [{"question": str, "answers": [str, ...]}]}`
(an `"id"` names the document; other extra keys are ignored). A question may also carry

- `"kind"`: the kind of its answer, free text such as `"digits"`, `"word"`, `"name"`, `"place"`: the report then
  breaks every method's scores down by kind (`by_kind`);
- `"type"`: the question's type as the synthetic data files write it (`"year"`, `"person"`, ...), kept with the
  question and copied into each prediction record.

Both are optional and, when present, must be non-empty strings (kept stripped).

Long contexts are built as in the paper's StreamingQA setting: consecutive documents are concatenated,
`group_size` at a time, into one context, and every question of those documents is asked against it. Scored by
SQuAD token F1, exact match and "gold contained" (the gold answer occurs in the prediction as whole words)
against the best gold answer; a question whose every answer normalises to nothing (only punctuation or articles,
e.g. "A") cannot be looked for: its `contained` is None and it is left out of that average (and counted).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from .engine import ADAPTER_METHODS, Engine, Unit
from .records import EvalDataError, need, need_list, need_text, read_records
from .metrics import best_contains, best_exact_match, best_f1, normalize_answer

__all__ = ["TASK", "QUESTION_LABELS", "load_documents", "group_documents", "prepare", "score_questions"]

TASK = "knowledge"
DOCUMENT_SEPARATOR = "\n\n"
# optional labels of a question, kept with it and copied into its prediction records
QUESTION_LABELS = ("kind", "type")


def check_questions(questions, where: str) -> list[dict]:
    out = []
    for i, q in enumerate(need_list(questions, "questions", where)):
        at = f"{where} (question {i})"
        if not isinstance(q, dict):
            raise EvalDataError(f"{at}: expected an object with 'question' and 'answers'.")
        question = need_text(need(q, "question", at, TASK), "'question'", at)
        answers = need(q, "answers", at, TASK)
        answers = [answers] if isinstance(answers, str) else need_list(answers, "'answers'", at)
        for a in answers:
            need_text(a, "every answer", at)
        item = {"question": question, "answers": list(answers)}
        for label in QUESTION_LABELS:
            if label in q:
                item[label] = need_text(q[label], f"'{label}'", at).strip()
        out.append(item)
    return out


def _searchable(answers) -> bool:
    """Whether some gold answer has a word left after normalisation (so that gold contained can look for it)."""
    return any(normalize_answer(a) for a in answers)


def load_documents(path) -> list[dict]:
    """Validated documents `{"id", "context", "questions"}` in file order."""
    docs = []
    for where, record in read_records(path, TASK):
        context = need_text(need(record, "context", where, TASK), "'context'", where)
        questions = check_questions(need(record, "questions", where, TASK), where)
        docs.append({"id": str(record.get("id", where.rsplit(":", 1)[-1])), "context": context,
                     "questions": questions})
    return docs


def group_documents(docs: Sequence[dict], group_size: int, limit: Optional[int] = None) -> list[dict]:
    """Consecutive, non-overlapping groups of `group_size` documents (only full groups), at most `limit`."""
    if group_size < 1:
        raise ValueError(f"group sizes must be positive, got {group_size}.")
    groups = []
    for start in range(0, len(docs) - group_size + 1, group_size):
        if limit is not None and len(groups) >= limit:
            break
        members = docs[start:start + group_size]
        groups.append({
            "id": f"docs{group_size}-{start}",
            "documents": [d["id"] for d in members],
            "context": DOCUMENT_SEPARATOR.join(d["context"] for d in members),
            "questions": [q for d in members for q in d["questions"]],
        })
    return groups


def prepare(path, engine: Engine, *, limit: Optional[int] = None, max_questions: Optional[int] = None,
            group_sizes: Sequence[int] = (1, 4, 16), **_) -> dict:
    docs = load_documents(path)
    units, skipped = [], []
    for g in sorted(set(int(g) for g in group_sizes)):
        groups = group_documents(docs, g, limit)
        if not groups:
            skipped.append(g)
        for grp in groups:
            units.append(Unit(
                uid=grp["id"], context=grp["context"], queries=grp["questions"][:max_questions],
                group=f"docs={g}", context_tokens=engine.count_tokens(grp["context"]),
                meta={"documents": grp["documents"]},
            ))
    if not units:
        raise EvalDataError(f"{path}: {len(docs)} document(s), fewer than any group size in {list(group_sizes)}.")
    return {"units": units, "metric": "f1", "score": score_questions,
            "info": {"documents": len(docs), "group_sizes": sorted(set(group_sizes)),
                     "group_sizes_skipped": skipped}}


def score_questions(engine: Engine, method: str, batch: list) -> list[dict]:
    """Greedy answers for `(unit, {"question", "answers"}, ctx)` items; token F1 / EM / gold contained against the
    best gold (`f1`, `em`, `contained`, each 0..1); the question's `kind` and `type`, when it has them, are copied.

    Each record also carries the log-likelihood of the first gold answer (and its end of turn) under the same
    prompt and adapter, `answer_nll` over `answer_tokens`: a graded measure of what the context taught, which
    moves before greedy answers do. Its cost is not part of the answer's: each record's `untimed_seconds` is its
    share of the gold-scoring time, which the runner subtracts from the batch's answering time.
    """
    from .method_costs import adapter_flops_per_token, generation_flops

    prompts, flags = [], []
    for unit, query, _ in batch:
        ids, truncated = engine.prompt(query["question"], unit.context if method == "prompting" else None,
                                       reserve=engine.max_new_tokens)
        prompts.append(ids)
        flags.append(truncated)
    contexts = [ctx for _, _, ctx in batch] if method in ADAPTER_METHODS else None
    answers = engine.generate(prompts, contexts)
    start = time.perf_counter()
    golds = [engine.continuation_ids(query["answers"][0]) for _, query, _ in batch]
    gold_logprobs = engine.continuation_logprobs(list(zip(prompts, golds)), contexts)
    untimed = (time.perf_counter() - start) / len(batch)
    records = []
    for (unit, query, ctx), ids, truncated, (answer, n_new), gold, logprob in zip(
            batch, prompts, flags, answers, golds, gold_logprobs):
        extra = adapter_flops_per_token(ctx) if method in ADAPTER_METHODS else 0.0
        records.append({
            "question": query["question"], "prediction": answer, "gold": query["answers"],
            "f1": best_f1(answer, query["answers"]), "em": best_exact_match(answer, query["answers"]),
            "contained": best_contains(answer, query["answers"]) if _searchable(query["answers"]) else None,
            **{label: query[label] for label in QUESTION_LABELS if label in query},
            "answer_nll": -logprob, "answer_tokens": len(gold), "untimed_seconds": untimed,
            "prompt_tokens": len(ids), "generated_tokens": n_new, "truncated": truncated,
            "flops": generation_flops(engine.config, len(ids), n_new, extra),
        })
    return records
