"""Padding rows of token ids into a batch, the one way every part of the package does it."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool = False,
             labels: Optional[Sequence[Sequence[int]]] = None) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (rows padded to the longest with `pad_id`, on the right or the `left`) and,
    with `labels`, a `labels` tensor padded with -100 on the same side."""
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    label_t = torch.full((len(rows), width), -100, dtype=torch.long) if labels is not None else None
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        input_ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
        if label_t is not None:
            row_labels = list(labels[i])
            span = slice(width - len(row_labels), width) if left else slice(0, len(row_labels))
            label_t[i, span] = torch.as_tensor(row_labels, dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if label_t is not None:
        batch["labels"] = label_t
    return batch
