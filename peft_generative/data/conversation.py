"""Personalisation from conversation history (MSC-like) from ``chitchat-dataset==0.9.0``.

Raw format (``chitchat_dataset/dataset.json``): ``{conversation_id: {"messages": [[{"text", "timestamp",
"sender"}, ...], ...], "start": ISO time, "prompt"?: str, "ratings"?: {...}}}``; each inner list is one turn
(consecutive messages of one sender), senders are stable speaker ids. 7,168 conversations; 4,018 have two
speakers (the rest only one, unusable here); 558 speaker pairs talk more than once.

For every speaker pair with at least ``min_sessions`` two-speaker conversations, sessions are ordered by start
time; for each session t >= 2 the earlier sessions are the ``history`` and session t is ``next`` (so a pair with
n sessions yields n - 1 examples). Messages are written from the perspective of one fixed speaker of the pair,
the lexicographically smaller speaker id, as ``"assistant"``; the partner is ``"user"``; the messages of a turn
are joined with newlines. The split (80/10/10 by default) is by speaker pair, so no pair's sessions cross splits.

Files per split: ``<split>.eval.jsonl`` ``{"id", "pair", "history": [[{"role", "content"}, ...], ...],
"next": [...]}`` and ``<split>.jsonl`` (training) ``{"id", "pair", "context": render_history(history),
"messages": next}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from .archive import archive_kind, read_member
from .jsonl import write_json, write_jsonl
from .splits import assign_split, check_fractions, hash_order

__all__ = ["load_sessions", "render_history", "build_conversation_dataset", "DEFAULT_CONVERSATION_FRACTIONS"]

PathLike = str | os.PathLike
DEFAULT_CONVERSATION_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def _dataset_bytes(path: Path) -> bytes:
    if path.is_file() and path.suffix.lower() == ".json":
        return path.read_bytes()
    archive_kind(path)
    return read_member(path, "chitchat_dataset/dataset.json")[1]


def _messages(turns: list, assistant: str) -> list[dict]:
    out: list[dict] = []
    for turn in turns:
        texts = [" ".join(str(m.get("text") or "").split()) for m in turn]
        texts = [t for t in texts if t]
        if not texts:
            continue
        role = "assistant" if turn[0]["sender"] == assistant else "user"
        content = "\n".join(texts)
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n" + content
        else:
            out.append({"role": role, "content": content})
    return out


def load_sessions(dataset_json: PathLike) -> tuple[dict[tuple[str, str], list[dict]], dict[str, int]]:
    """Parse ``dataset.json`` (or the chitchat wheel, or a directory): returns speaker pair -> sessions ordered by
    start time (each ``{"id", "start", "messages"}``, assistant = the pair's smaller id) and parse statistics."""
    data = json.loads(_dataset_bytes(Path(dataset_json).expanduser()).decode("utf-8"))
    pairs: dict[tuple[str, str], list[dict]] = {}
    stats = {"conversations": len(data), "two_speaker": 0, "skipped_not_two_speakers": 0, "skipped_mixed_turn": 0}
    for conv_id in sorted(data):
        conv = data[conv_id]
        turns = [t for t in conv.get("messages") or [] if t]
        senders = {m["sender"] for t in turns for m in t}
        if len(senders) != 2:
            stats["skipped_not_two_speakers"] += 1
            continue
        if any(len({m["sender"] for m in t}) != 1 for t in turns):
            stats["skipped_mixed_turn"] += 1
            continue
        pair = tuple(sorted(senders))
        start = conv.get("start") or min(m.get("timestamp") or "" for t in turns for m in t)
        msgs = _messages(turns, assistant=pair[0])
        if len({m["role"] for m in msgs}) < 2:
            stats["skipped_not_two_speakers"] += 1
            continue
        stats["two_speaker"] += 1
        pairs.setdefault(pair, []).append({"id": conv_id, "start": start, "messages": msgs})
    for sessions in pairs.values():
        sessions.sort(key=lambda s: (s["start"], s["id"]))
    return pairs, stats


def render_history(history: Sequence[Sequence[dict]]) -> str:
    """Earlier sessions as plain text: ``"Session 1:\\nUser: ...\\nAssistant: ...\\n\\nSession 2:\\n..."``."""
    blocks = []
    for i, session in enumerate(history, 1):
        lines = [f"Session {i}:"] + [f"{m['role'].capitalize()}: {m['content']}" for m in session]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def build_conversation_dataset(
    out_dir: PathLike,
    dataset_json: PathLike | None = None,
    *,
    seed: int = 0,
    fractions: Mapping[str, float] = DEFAULT_CONVERSATION_FRACTIONS,
    min_sessions: int = 2,
    max_history_sessions: int | None = None,
    data_root: PathLike | None = None,
    quiet: bool = True,
) -> dict[str, Path]:
    """Write ``<split>.jsonl`` (training) and ``<split>.eval.jsonl`` (evaluation) per split plus ``manifest.json``;
    returns ``{"train": ..., "train.eval": ..., ...}``. ``dataset_json``: ``dataset.json``, the chitchat-dataset
    0.9.0 wheel or a directory (``None``: fetch). ``max_history_sessions`` keeps only the most recent sessions."""
    fr = check_fractions(fractions)
    if min_sessions < 2:
        raise ValueError("min_sessions must be >= 2 (history plus next session)")
    if dataset_json is None:
        from .cache import fetch

        dataset_json = fetch("chitchat", data_root, quiet=quiet)
    pairs, parse_stats = load_sessions(dataset_json)

    examples: dict[str, list[dict]] = {s: [] for s in fr}
    pair_counts = {s: 0 for s in fr}
    for pair in sorted(pairs):
        sessions = pairs[pair]
        if len(sessions) < min_sessions:
            continue
        split = assign_split("|".join(pair), fr, seed)
        pair_counts[split] += 1
        for t in range(1, len(sessions)):
            hist = sessions[:t] if max_history_sessions is None else sessions[max(0, t - max_history_sessions):t]
            examples[split].append({
                "id": sessions[t]["id"],
                "pair": "|".join(pair),
                "history": [s["messages"] for s in hist],
                "next": sessions[t]["messages"],
            })

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for split, recs in examples.items():
        order = hash_order([r["id"] for r in recs], seed)
        recs = [recs[i] for i in order]
        paths[f"{split}.eval"] = out / f"{split}.eval.jsonl"
        write_jsonl(paths[f"{split}.eval"], recs)
        paths[split] = out / f"{split}.jsonl"
        write_jsonl(paths[split], ({"id": r["id"], "pair": r["pair"], "context": render_history(r["history"]),
                                    "messages": r["next"]} for r in recs))
    write_json(out / "manifest.json", {
        "dataset": "conversation",
        "source": "chitchat-dataset 0.9.0 chitchat_dataset/dataset.json",
        "seed": seed,
        "fractions": fr,
        "min_sessions": min_sessions,
        "max_history_sessions": max_history_sessions,
        "parse": parse_stats,
        "counts": {s: {"pairs": pair_counts[s], "examples": len(examples[s])} for s in fr},
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths
