"""Locating assistant turns in a chat template's tokens (for labels and scoring)."""

from __future__ import annotations

from typing import Optional, Sequence


def assistant_turn_labels(tokenizer, messages: Sequence[dict], scored: Sequence[bool]) -> tuple[list[int], list[int]]:
    """Token ids of a chat and labels equal to the ids on the assistant turns marked in `scored`, -100 elsewhere.

    Each turn is found by tokenising the chat up to it with the generation prompt and up to its end: the template
    must be prefix-stable (the tokens of a shorter chat start the tokens of a longer one), which is checked.
    """
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    ids: list[int] = []
    labels: list[int] = []
    for i, keep in enumerate(scored):
        if not keep:
            continue
        if plain[i]["role"] != "assistant":
            raise ValueError(f"Message {i} is a {plain[i]['role']!r} message; only assistant turns can be scored.")
        prefix = list(tokenizer.apply_chat_template(plain[:i], add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"])
        full = list(tokenizer.apply_chat_template(plain[: i + 1], tokenize=True, return_dict=True)["input_ids"])
        if full[: len(prefix)] != prefix or len(prefix) < len(ids):
            raise ValueError("The chat template is not prefix-stable; cannot locate the assistant tokens.")
        labels += [-100] * (len(prefix) - len(ids)) + full[len(prefix):]
        ids = full
    if not ids:
        raise ValueError("The conversation has no assistant reply (after a user message) to learn from or score.")
    # the template may close the conversation with more tokens than the last scored turn covered
    return ids, labels + [-100] * (len(ids) - len(labels))


def with_context_in_prompt(messages: Sequence[dict], context: Optional[str]) -> list[dict]:
    """The prompting baseline: `context` in front of the first user message (or as a first user message before an
    opening assistant message, which is then not scored)."""
    messages = [dict(m) for m in messages]
    if context is None:
        return messages
    if messages and messages[0]["role"] == "user":
        messages[0]["content"] = f"{context}\n\n{messages[0]['content']}"
        return messages
    return [{"role": "user", "content": context, "scored": False}] + messages
