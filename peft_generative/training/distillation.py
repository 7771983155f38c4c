"""Dense distillation from an in-context teacher: the KL from the teacher's top-k answer distribution to the
student's, token by token (Doc-to-LoRA, Cartridges: every answer token gives a whole distribution, not one label)."""

from __future__ import annotations

from typing import Optional

import torch


def topk_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor, top_k: int,
            answer: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per answer token, `KL(p_teacher || p_student)` over the teacher's `top_k` most likely tokens (renormalised),
    from log-probabilities `(tokens, vocab)`. Returns `(kl (tokens,), kept (tokens,) bool)`: with `answer` (the gold
    tokens, `(tokens,)`), only tokens whose teacher top-1 is the gold token are kept; otherwise all are."""
    top, tokens = teacher_logp.topk(min(top_k, teacher_logp.shape[-1]), dim=-1)
    target = torch.softmax(top, dim=-1)
    kl = (target * (target.clamp_min(1e-12).log() - student_logp.gather(-1, tokens))).sum(-1)
    kept = torch.ones_like(kl, dtype=torch.bool) if answer is None else tokens[:, 0] == answer
    return kl, kept
