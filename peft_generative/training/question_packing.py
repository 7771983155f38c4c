"""Several questions about one context in one batch row, their shared prompt computed once.

Every question row of a chat model starts with the same tokens (the chat template's system turn and the opening of
the user turn): about half of a short question-answer row. Rows asked about the same context carry the same adapter,
so that prefix's hidden states are the same in each of them. `pack_questions` lays the rows of one context out as
`prefix + suffix_1 + suffix_2 + ...`, with position ids that restart at the prefix's end for every suffix and a 4-D
attention mask in which a suffix sees the prefix and its own earlier tokens only. Each answer token therefore sees
exactly the tokens it saw in its own row, at the same positions: the loss and its gradient are those of the separate
rows (up to float summation order; tests/test_question_packing.py), for fewer tokens and less padding.
"""

from __future__ import annotations

from typing import Sequence

import torch

IGNORE = -100


def shared_prefix_length(rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> int:
    """The tokens all `(ids, labels)` rows share at their start, stopping one token before the first labelled one,
    so that every suffix opens with an unlabelled token (a labelled token is then predicted from its own suffix)."""
    ids = [list(r[0]) for r in rows]
    first_label = min((next((i for i, v in enumerate(r[1]) if v != IGNORE), len(r[1])) for r in rows))
    length = 0
    for column in zip(*ids):
        if any(token != column[0] for token in column):
            break
        length += 1
    return max(0, min(length, first_label - 1))


Row = tuple[Sequence[int], Sequence[int]]  # (token ids, labels)


def pack_group(rows: Sequence[Row]) -> tuple[list[int], list[int], list[int], list[int]]:
    """One packed row from the `(ids, labels)` rows of one context: `(ids, labels, position_ids, segment)`, where
    `segment` is 0 on the shared prefix and j on the tokens of the j-th row's suffix (1-based)."""
    if not rows:
        raise ValueError("pack_group needs at least one (ids, labels) row.")
    for ids, labels in rows:
        if len(ids) != len(labels):
            raise ValueError(f"A row has {len(ids)} token ids but {len(labels)} labels; they must match.")
    prefix = shared_prefix_length(rows)
    ids, labels = list(rows[0][0][:prefix]), list(rows[0][1][:prefix])
    positions, segment = list(range(prefix)), [0] * prefix
    for j, (row_ids, row_labels) in enumerate(rows, start=1):
        ids += row_ids[prefix:]
        labels += row_labels[prefix:]
        positions += range(prefix, len(row_ids))
        segment += [j] * (len(row_ids) - prefix)
    return ids, labels, positions, segment


def packed_attention_mask(segments: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype = torch.float32
                          ) -> torch.Tensor:
    """The additive `(batch, 1, n, n)` mask of packed rows: query t sees key s <= t when s is in the prefix
    (segment 0) or in t's own segment; padding sees only itself (no row of the softmax is empty)."""
    n = segments.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=segments.device).tril()
    same = segments.unsqueeze(2) == segments.unsqueeze(1)
    prefix = (segments == 0).unsqueeze(1)
    allowed = causal & (same | prefix) & valid.bool().unsqueeze(1) & valid.bool().unsqueeze(2)
    allowed |= torch.eye(n, dtype=torch.bool, device=segments.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def pack_questions(groups: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]], pad_id: int
                   ) -> dict[str, torch.Tensor]:
    """A batch of packed rows, one per group of `(ids, labels)` rows (the questions asked about one context), padded
    on the right: `input_ids`, `labels` (-100 on padding), `position_ids` and the 4-D additive `attention_mask`
    (fp32; the model adds it to its attention scores, so any compute dtype takes it)."""
    packed = [pack_group(rows) for rows in groups]
    width = max(len(p[0]) for p in packed)
    shape = (len(packed), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    valid = torch.zeros(shape, dtype=torch.bool)
    for i, (ids, row_labels, row_positions, segment) in enumerate(packed):
        span = slice(0, len(ids))
        input_ids[i, span] = torch.tensor(ids)
        labels[i, span] = torch.tensor(row_labels)
        positions[i, span] = torch.tensor(row_positions)
        segments[i, span] = torch.tensor(segment)
        valid[i, span] = True
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions,
            "attention_mask": packed_attention_mask(segments, valid)}
