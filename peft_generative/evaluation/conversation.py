"""Personalisation (MSC-like): earlier sessions of a conversation are the context.

Input, one JSON object per line: `{"history": [[{"role", "content"}, ...], ...]}` plus either
`"probes": [{"question", "answers"}]` (questions about the history; token F1 / EM / gold contained as for
knowledge, with the same optional per-question `"kind"` and `"type"`) or
`"next": [{"role", "content"}, ...]` (the next session; perplexity of its assistant replies that follow a user
message; a session with none is left out and counted; no "gold contained" there: nothing is generated, and a
reply is a long free text, not an answer to look for). All records of a file must have the same kind (a record
with both is scored by its probes). The context is
`render_history(history)` (`peft_generative.data.conversation`), as in the training data.
"""

from __future__ import annotations

from typing import Optional

from ..data.conversation import render_history
from .method_costs import adapter_flops_per_token, lm_flops
from .engine import ADAPTER_METHODS, Engine, Unit
from .records import EvalDataError, need, need_list, need_text, read_records
from .knowledge import check_questions, score_questions

__all__ = ["TASK", "load_conversations", "prepare", "score_next_session"]

TASK = "conversation"
ROLES = ("user", "assistant", "system")


def _messages(value, what: str, where: str) -> list[dict]:
    out = []
    for i, m in enumerate(need_list(value, what, where)):
        at = f"{where} ({what}, message {i})"
        if not isinstance(m, dict):
            raise EvalDataError(f"{at}: expected an object with 'role' and 'content'.")
        role = need(m, "role", at, TASK)
        if role not in ROLES:
            raise EvalDataError(f"{at}: role must be one of {ROLES}, got {role!r}.")
        out.append({"role": role, "content": need_text(need(m, "content", at, TASK), "'content'", at)})
    return out


def load_conversations(path, skipped: Optional[list] = None) -> tuple[list[dict], str]:
    """Validated records and the file's kind: `"probes"` or `"next"`. A next session with no assistant reply after
    a user message has nothing to score: it is left out (its `FILE:LINE` appended to `skipped`)."""
    records, kinds = [], set()
    skipped = [] if skipped is None else skipped
    for where, record in read_records(path, TASK):
        history = need_list(need(record, "history", where, TASK), "'history'", where)
        sessions = [_messages(s, f"history session {i}", where) for i, s in enumerate(history)]
        if "probes" in record:
            kind, payload = "probes", check_questions(record["probes"], where)
        elif "next" in record:
            kind, payload = "next", _messages(record["next"], "next", where)
            if not any(m["scored"] for m in Engine.mark_scored(payload)):
                kinds.add(kind)
                skipped.append(where)
                continue
        else:
            raise EvalDataError(
                f"{where}: missing key 'probes' or 'next' (the conversation format needs one; see "
                f"docs/evaluation.md). Keys found: {sorted(record)}."
            )
        kinds.add(kind)
        if len(kinds) > 1:
            raise EvalDataError(f"{where}: the file mixes records with 'probes' and with 'next'; split it in two.")
        records.append({"id": str(record.get("id", where.rsplit(":", 1)[-1])), "history": sessions, kind: payload})
    if not records:
        raise EvalDataError(f"{path}: no record has an assistant reply after a user message to score.")
    return records, kinds.pop()


def prepare(path, engine: Engine, *, limit: Optional[int] = None, max_questions: Optional[int] = None, **_) -> dict:
    skipped: list[str] = []
    records, kind = load_conversations(path, skipped)
    records = records[:limit]
    units = []
    for rec in records:
        context = render_history(rec["history"])
        queries = rec["probes"][:max_questions] if kind == "probes" else [{"messages": rec["next"]}]
        units.append(Unit(uid=rec["id"], context=context, queries=queries, group=f"sessions={len(rec['history'])}",
                          context_tokens=engine.count_tokens(context)))
    if kind == "probes":
        return {"units": units, "metric": "f1", "score": score_questions, "info": {"kind": kind}}
    info = {"kind": kind, "records_without_reply_to_score": len(skipped), "skipped": skipped[:20]}
    return {"units": units, "metric": "perplexity", "score": score_next_session, "info": info}


def score_next_session(engine: Engine, method: str, batch: list) -> list[dict]:
    """Log-likelihood of the next session's assistant replies, one conversation at a time."""
    records = []
    for unit, query, ctx in batch:
        result = engine.conversation_nll(query["messages"], unit.context if method == "prompting" else None,
                                         ctx if method in ADAPTER_METHODS else None)
        extra = adapter_flops_per_token(ctx) if method in ADAPTER_METHODS else 0.0
        records.append({
            "nll": result["nll"], "tokens": result["tokens"], "prompt_tokens": result["sequence_tokens"],
            "generated_tokens": 0, "truncated": result["truncated"],
            "flops": lm_flops(engine.config, result["sequence_tokens"], logits=result["tokens"], extra_per_token=extra),
        })
    return records
