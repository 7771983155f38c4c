"""Optional test-time refinement of a generated context: a few gradient steps on its states.

Generative Adapter makes an adapter in one forward pass (arXiv 2411.05877). Refinement, off by default, spends a
few more passes per context: the states are moved by Adam so that the model carrying the context's adapter, with no
context in its prompt, predicts the context's own tokens better (the self-supervised reconstruction objective the
generator is pretrained with). Only the states change, so the refined context saves, loads, exports and extends
like any other; `forget` is refused on it, because its states are no longer a sum of per-text contributions.

The steps are relative to each state's own scale (`states = S + rms(S) * D`, Adam on `D`), so one learning rate
suits every generator and context length. Deterministic on a given machine: Adam, no sampling.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from ..utils.batching import pad_rows
from .context import REFINED_MARKER, GeneratedContext

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator


def reconstruction_windows(rows: Sequence[Sequence[int]], window: int, max_tokens: int) -> tuple[list, list]:
    """Each row's first `max_tokens` tokens cut into windows of `window` tokens: `(windows, row of each window)`.
    A window of one token predicts nothing and is dropped."""
    windows, owners = [], []
    for i, ids in enumerate(rows):
        ids = list(ids)[:max_tokens]
        for start in range(0, len(ids), window):
            piece = ids[start:start + window]
            if len(piece) > 1:
                windows.append(piece)
                owners.append(i)
    return windows, owners


def reconstruction_loss(generator: "Generator", context: GeneratedContext, windows: list, owners: list
                        ) -> torch.Tensor:
    """Sum over rows of each row's mean next-token NLL of its own windows, with the row's adapter active and no
    context in the prompt (rows are independent: each row's gradient is that of its own mean)."""
    batch = pad_rows(windows, 0, labels=windows)  # padding is masked out of attention and loss
    device = generator.device
    with generator.router.using(context.rows(owners)):
        logits, target, window_of = generator.labelled_logits(
            batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["labels"].to(device))
    nll = F.cross_entropy(logits.float(), target, reduction="none")
    which = torch.as_tensor(owners, device=device)[window_of]
    per_row = torch.zeros(len(context), device=device).index_add(0, which, nll)
    count = torch.zeros(len(context), device=device).index_add(0, which, torch.ones_like(nll))
    return (per_row / count.clamp(min=1)).sum()


def refine_context(generator: "Generator", context: GeneratedContext, rows: Sequence[Sequence[int]], *, steps: int,
                   lr: float, max_tokens: int) -> GeneratedContext:
    """`context` after `steps` Adam steps on the reconstruction of `rows` (the token ids of each row's text).
    Returns a new context; rows with no tokens are left as they are."""
    if steps < 1:
        raise ValueError(f"refine_steps must be a positive number of steps, got {steps}.")
    if not lr > 0:
        raise ValueError(f"refine_lr must be positive, got {lr}.")
    windows, owners = reconstruction_windows(rows, generator.config.window, max_tokens)
    if not windows:
        return context
    base = {key: state.detach() for key, state in context.states.items()}
    scale = {key: state.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() for key, state in base.items()}
    deltas = {key: torch.zeros_like(state, requires_grad=True) for key, state in base.items()}
    optimizer = torch.optim.Adam(list(deltas.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            states = {key: base[key] + scale[key] * deltas[key] for key in base}
            trial = GeneratedContext(generator, states, context.num_tokens, context.added_texts)
            loss = reconstruction_loss(generator, trial, windows, owners)
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=list(deltas.values()))
            optimizer.step()
    with torch.no_grad():
        states = {key: base[key] + scale[key] * deltas[key] for key in base}
    texts = [t + Counter({REFINED_MARKER: 1}) if n > 0 else t for t, n in zip(context.added_texts, context.num_tokens)]
    return GeneratedContext(generator, states, context.num_tokens, texts)
