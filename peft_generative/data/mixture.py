"""The instruction-tuning mixture: knowledge QA, demonstrations and conversations in one `context` + `messages`
JSONL (the format `GenerativeAdapterTrainer` reads), sampled with a fixed seed from the training splits only.
A `pretraining` entry in `sizes` adds that many pretraining documents as `text` rows (a mixed dataset: the
trainer replays the self-supervised objective next to the instructions)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from .jsonl import read_jsonl, write_jsonl

DEFAULT_SIZES = {"knowledge": 6000, "demonstrations": 1500, "conversation": 1500}


def _messages(record: dict, max_messages: int) -> Optional[list[dict]]:
    if "messages" in record:
        messages = [m for m in record["messages"] if m.get("content", "").strip()]
        while messages and messages[0]["role"] != "user":
            messages.pop(0)
        messages = messages[:max_messages]
        # end on an assistant turn so there is something to learn
        while messages and messages[-1]["role"] != "assistant":
            messages.pop()
        return messages or None
    return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]


def build_sft_mixture(data_dir: str | Path, out_file: str | Path, sizes: Optional[dict] = None, seed: int = 0,
                      split: str = "train", max_messages: int = 4, max_context_chars: Optional[int] = 3000) -> dict:
    """Sample `sizes[task]` records from `<data_dir>/<task>/<split>.jsonl`, shuffle, write `out_file`.

    `max_context_chars` keeps only the end of longer contexts (the most recent conversation sessions), so a
    context fits one chunk: several chunks in sequential mode mean backpropagating through every chunk's pass.
    Tasks whose records have no `context` (the pretraining corpus) become `text` rows; then every row carries
    `context`, `messages` and `text`, one side empty, so the JSONL loads with one schema."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    rng = random.Random(seed)
    rows, counts = [], {}
    for task, size in sizes.items():
        records = list(read_jsonl(Path(data_dir) / task / f"{split}.jsonl"))
        rng.shuffle(records)
        taken = 0
        for record in records:
            if taken >= size:
                break
            if "context" not in record:
                if record.get("text", "").strip():
                    rows.append({"context": "", "messages": [], "text": record["text"], "task": task})
                    taken += 1
                continue
            messages = _messages(record, max_messages)
            if not messages or not record.get("context", "").strip():
                continue
            context = record["context"]
            if max_context_chars is not None and len(context) > max_context_chars:
                context = context[-max_context_chars:]
                context = context[context.find("\n") + 1:] or context  # start at a line boundary
            rows.append({"context": context, "messages": messages, "task": task})
            taken += 1
        counts[task] = taken
    if any("text" in row for row in rows):
        for row in rows:
            row.setdefault("text", "")
    rng.shuffle(rows)
    write_jsonl(out_file, rows)
    return counts
