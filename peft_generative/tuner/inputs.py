"""Turning the text users pass to `contextualize` into validated rows of token ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence, Union

import torch

TextInput = Union[str, Sequence[str], Sequence[int], Sequence[Sequence[int]], torch.Tensor, Mapping]


def chunk_prefix(tokenizer) -> list[int]:
    """[bos] when the tokenizer starts every sequence with BOS (each chunk is a fresh sequence), else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [bos] if ids and ids[0] == bos else []


def _from_text(texts: list[str], tokenizer, vocab: int) -> tuple[list[list[int]], list[int]]:
    if tokenizer is None:
        raise ValueError(
            "Text contexts need a tokenizer: pass `tokenizer=` to contextualize, or call "
            "`model.set_tokenizer(tokenizer)` once."
        )
    if len(tokenizer) > vocab:
        raise ValueError(
            f"This tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab}: the tokenizer does not "
            "belong to this model. Load the tokenizer of the base model."
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Context {i} is {type(text).__name__}; expected str.")
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return rows, chunk_prefix(tokenizer)


def _from_ids(context, vocab: int) -> list[list[int]]:
    if isinstance(context, Mapping):
        if "input_ids" not in context:
            raise ValueError("A mapping passed as context must hold `input_ids` (a tokenizer's output).")
        ids = context["input_ids"]
        mask = context.get("attention_mask")
        ids = torch.as_tensor(ids)
        if ids.dtype == torch.bool or ids.is_floating_point():
            raise ValueError(f"`input_ids` must be integer token ids, got a {ids.dtype} tensor.")
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).reshape(ids.shape)
        return [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    if isinstance(context, torch.Tensor):
        if context.dim() not in (1, 2) or context.is_floating_point() or context.dtype == torch.bool:
            raise ValueError(f"Token ids must be a 1-D or 2-D integer tensor, got shape {tuple(context.shape)}.")
        return [context.tolist()] if context.dim() == 1 else context.tolist()
    if all(isinstance(x, int) for x in context):
        return [list(context)]
    return [list(row) for row in context]


def to_token_rows(context: TextInput, tokenizer, vocab: int) -> tuple[list[list[int]], list[int]]:
    """Rows of token ids (one per text) and the prefix to put in front of every chunk; `vocab` is the size of the
    model's input embedding."""
    if isinstance(context, (list, tuple)) and len(context) == 0:
        raise ValueError("No context given: pass at least one non-empty text.")
    if isinstance(context, str):
        rows, prefix = _from_text([context], tokenizer, vocab)
    elif isinstance(context, (list, tuple)) and context and all(isinstance(x, str) for x in context):
        rows, prefix = _from_text(list(context), tokenizer, vocab)
    elif isinstance(context, (list, tuple, torch.Tensor, Mapping)):
        rows, prefix = _from_ids(context, vocab), []
    else:
        raise TypeError(
            f"Cannot contextualize a {type(context).__name__}: pass a string, a list of strings, token ids or a "
            "tokenizer output."
        )
    for i, row in enumerate(rows):
        if len(row) == 0:
            raise ValueError(f"Context {i} is empty (no tokens): pass non-empty text, or drop it from the batch.")
        bad = [t for t in row if not isinstance(t, int) or isinstance(t, bool) or t < 0 or t >= vocab]
        if bad:
            raise ValueError(
                f"Context {i} has token id {bad[0]!r} outside the model's vocabulary (0..{vocab - 1}): pass text, or "
                "integer ids from this model's tokenizer."
            )
    return rows, prefix
